//! The CRDs install on a real API server and every kind is served.
//! Skipped (passes, prints why) without `KUBECONFIG`.

use flymq_k8s_e2e::{cluster_or_skip, env_or, install_crds};
use flymq_operator::crd::{Acl, FlyMQCluster, Topic, User};
use kube::api::{Api, ListParams};

#[tokio::test(flavor = "multi_thread")]
async fn crds_install_and_are_served() {
    let Some(client) = cluster_or_skip("crds_install_and_are_served").await else {
        return;
    };
    install_crds(&client).await.expect("CRDs install");
    let ns = env_or("FLYMQ_E2E_LIST_NAMESPACE", "default");
    let lp = ListParams::default();
    Api::<FlyMQCluster>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .expect("FlyMQClusters are served");
    Api::<Topic>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .expect("Topics are served");
    Api::<User>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .expect("Users are served");
    Api::<Acl>::namespaced(client, &ns)
        .list(&lp)
        .await
        .expect("ACLs are served");
}
