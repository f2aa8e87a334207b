//! Harness of the operator's end-to-end tests (`tests/*.rs` of this crate).
//!
//! The tests run against a real Kubernetes cluster only when `KUBECONFIG` is
//! set; otherwise each prints `<test>: skipped: KUBECONFIG not set` and
//! passes. With a cluster they install the CRDs and the operator (Helm chart,
//! `deploy/kustomize`, or an operator inside the test process: see
//! [`OperatorMode`]), then work in a fresh namespace `flymq-e2e-<n>` that is
//! deleted afterwards. docs/operator.md, "End-to-end tests", lists every
//! variable.

use std::fmt::Debug;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use flymq_operator::crd::{self, Condition};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// Field manager of everything the tests apply.
pub const MANAGER: &str = "flymq-e2e";
/// Namespace of the operator installed by Helm or kustomize.
pub const OPERATOR_NAMESPACE: &str = "flymq-system";
/// Helm release (and Deployment) name of the installed operator.
pub const OPERATOR_RELEASE: &str = "flymq-operator";
/// The operator image installed by Helm or kustomize unless
/// `FLYMQ_E2E_OPERATOR_IMAGE` says otherwise.
pub const DEFAULT_OPERATOR_IMAGE: &str = "ghcr.io/flymq/flymq-operator:0.1.0";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// The cluster to test against, or `None` after printing why the test is
/// skipped.
pub async fn cluster_or_skip(test: &str) -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty()) {
        println!("{test}: skipped: KUBECONFIG not set (see docs/operator.md, \"End-to-end tests\")");
        return None;
    }
    match Client::try_default().await {
        Ok(c) => Some(c),
        Err(e) => panic!("{test}: KUBECONFIG is set but no client can be built from it: {e}"),
    }
}

/// `$name`, or `default` when unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// How long one wait may take (`FLYMQ_E2E_TIMEOUT_SECS`, default 600).
pub fn timeout() -> Duration {
    Duration::from_secs(env_or("FLYMQ_E2E_TIMEOUT_SECS", "600").parse().unwrap_or(600))
}

/// Prints one progress line of a test.
pub fn step(test: &str, text: &str) {
    println!("[{test}] {text}");
}

/// Polls `probe` every two seconds until it answers `Ok(Ok(_))`; `Ok(Err(state))`
/// means "not yet", and the last state is reported on timeout.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<T, String>, kube::Error>>,
{
    let deadline = Instant::now() + timeout();
    let mut last: String;
    loop {
        match probe().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(state)) => last = state,
            Err(e) => last = format!("API error: {e}"),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out after {}s waiting for {what}; last seen: {last}",
                timeout().as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The condition of `type_`, if present.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A short debug rendering for "last seen" messages.
pub fn brief<T: Debug>(value: &T) -> String {
    let text = format!("{value:?}");
    text.chars().take(600).collect()
}

/// Server-side applies every CRD and waits until the API server serves them.
pub async fn install_crds(client: &Client) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crd::all() {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .map_err(|e| format!("applying CRD {name}: {e}"))?;
        wait_for(&format!("CRD {name} to be established"), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                Ok(if established {
                    Ok(())
                } else {
                    Err("not established".into())
                })
            }
        })
        .await?;
    }
    Ok(())
}

/// Where the operator under test runs (`FLYMQ_E2E_OPERATOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorMode {
    /// Already running in the cluster; the tests only apply the CRDs.
    Deployed,
    /// `helm upgrade --install` of charts/flymq-operator (release
    /// `flymq-operator` in `flymq-system`).
    Helm,
    /// `kubectl apply -k deploy/kustomize` (namespace `flymq-system`).
    Kustomize,
    /// Started inside the test process for each test's namespace; it must
    /// reach the brokers' admin API (`FLYMQ_OPERATOR_ADMIN_URL_TEMPLATE`).
    InProcess,
}

/// True when `tool` is an executable on `PATH`.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// The mode `FLYMQ_E2E_OPERATOR` asks for. `install` (the default) is Helm
/// when `helm` is on PATH, else kustomize when `kubectl` is, else in-process.
pub fn operator_mode() -> Result<OperatorMode, String> {
    operator_mode_from(
        &env_or("FLYMQ_E2E_OPERATOR", "install"),
        on_path("helm"),
        on_path("kubectl"),
    )
}

/// [`operator_mode`] for a value of `FLYMQ_E2E_OPERATOR` and the tools found.
pub fn operator_mode_from(value: &str, helm: bool, kubectl: bool) -> Result<OperatorMode, String> {
    match value {
        "install" if helm => Ok(OperatorMode::Helm),
        "install" if kubectl => Ok(OperatorMode::Kustomize),
        "install" => Ok(OperatorMode::InProcess),
        "helm" => Ok(OperatorMode::Helm),
        "kustomize" => Ok(OperatorMode::Kustomize),
        "deployed" => Ok(OperatorMode::Deployed),
        "in-process" => Ok(OperatorMode::InProcess),
        other => Err(format!(
            "FLYMQ_E2E_OPERATOR={other} is not one of install, helm, kustomize, deployed, in-process"
        )),
    }
}

/// Runs a command to completion; its output is in the error.
fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Installs the operator the way [`operator_mode`] says, once per test
/// process, and waits until it is available.
pub async fn install_operator(client: &Client, test: &str) -> Result<OperatorMode, String> {
    static INSTALLED: OnceLock<Mutex<Option<OperatorMode>>> = OnceLock::new();
    let mut mode = operator_mode()?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    if env_or("FLYMQ_E2E_OPERATOR", "install") == "install"
        && matches!(mode, OperatorMode::Helm | OperatorMode::Kustomize)
        && deployments
            .get_opt(OPERATOR_RELEASE)
            .await
            .map_err(|e| format!("looking for an installed operator: {e}"))?
            .is_some()
    {
        // Never upgrade (or downgrade) an operator someone installed: use it.
        step(
            test,
            &format!(
                "an operator is already installed ({OPERATOR_NAMESPACE}/{OPERATOR_RELEASE}); using it \
                 (FLYMQ_E2E_OPERATOR=helm or kustomize reinstalls it)"
            ),
        );
        mode = OperatorMode::Deployed;
    }
    // Always apply the current CRDs: Helm installs them only once and never
    // upgrades them.
    install_crds(client).await?;
    {
        let mut done = INSTALLED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if done.is_none() {
            let image = env_or("FLYMQ_E2E_OPERATOR_IMAGE", DEFAULT_OPERATOR_IMAGE);
            let (repository, tag) = image
                .rsplit_once(':')
                .filter(|(_, tag)| !tag.contains('/'))
                .ok_or_else(|| format!("FLYMQ_E2E_OPERATOR_IMAGE={image} has no tag (repository:tag)"))?;
            match mode {
                OperatorMode::Helm => {
                    step(test, &format!("installing the operator with helm ({image})"));
                    run(Command::new("helm")
                        .args(["upgrade", "--install", OPERATOR_RELEASE])
                        .arg(repo_root().join("charts").join("flymq-operator"))
                        .args(["--namespace", OPERATOR_NAMESPACE, "--create-namespace"])
                        .args(["--set", &format!("image.repository={repository}")])
                        .args(["--set", &format!("image.tag={tag}")])
                        .args(["--wait", "--timeout", &format!("{}s", timeout().as_secs())]))?;
                }
                OperatorMode::Kustomize => {
                    step(
                        test,
                        &format!("installing the operator with kubectl apply -k ({image})"),
                    );
                    run(Command::new("kubectl")
                        .args(["apply", "-k"])
                        .arg(repo_root().join("deploy").join("kustomize")))?;
                    if image != DEFAULT_OPERATOR_IMAGE {
                        run(Command::new("kubectl").args([
                            "-n",
                            OPERATOR_NAMESPACE,
                            "set",
                            "image",
                            &format!("deployment/{OPERATOR_RELEASE}"),
                            &format!("operator={image}"),
                        ]))?;
                    }
                }
                OperatorMode::Deployed => step(test, "using the operator already running in the cluster"),
                OperatorMode::InProcess => step(test, "running the operator inside the test process"),
            }
            *done = Some(mode);
        }
    }
    if matches!(mode, OperatorMode::Helm | OperatorMode::Kustomize) {
        wait_for("the operator Deployment to be available", || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get(OPERATOR_RELEASE).await?;
                let generation = d.metadata.generation;
                let status = d.status.unwrap_or_default();
                Ok(
                    if status.available_replicas.unwrap_or(0) >= 1
                        && status.updated_replicas.unwrap_or(0) >= 1
                        && status.observed_generation == generation
                    {
                        Ok(())
                    } else {
                        Err(brief(&status))
                    },
                )
            }
        })
        .await?;
    }
    Ok(mode)
}

/// Runs `body` in a fresh namespace (with an in-process operator watching
/// it, in that mode), then deletes the namespace (unless `FLYMQ_E2E_KEEP=1`)
/// whether or not `body` succeeded; panics with `body`'s error.
pub async fn in_namespace<F, Fut>(client: &Client, test: &str, mode: OperatorMode, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or_default();
    let ns = format!("flymq-e2e-{stamp}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "flymq-e2e"}}
    }))
    .expect("namespace object");
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("{test}: cannot create namespace {ns}: {e}"));
    step(test, &format!("namespace {ns}"));

    let operator = (mode == OperatorMode::InProcess).then(|| {
        let config = flymq_operator::runtime::Config {
            namespaces: vec![ns.clone()],
            http_addr: "127.0.0.1:0".parse().expect("address"),
            instance: Some(MANAGER.into()),
            admin_url_template: env_or(
                "FLYMQ_OPERATOR_ADMIN_URL_TEMPLATE",
                flymq_operator::admin::DEFAULT_URL_TEMPLATE,
            ),
        };
        tokio::spawn(async move {
            if let Err(e) = flymq_operator::runtime::run(config).await {
                eprintln!("in-process operator stopped: {e}");
            }
        })
    });

    let outcome = body(client.clone(), ns.clone()).await;
    if env_or("FLYMQ_E2E_KEEP", "0") == "1" {
        step(test, &format!("FLYMQ_E2E_KEEP=1: namespace {ns} is kept"));
    } else {
        let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    }
    if let Some(operator) = operator {
        operator.abort();
    }
    if let Err(e) = outcome {
        panic!("{test} (namespace {ns}): {e}");
    }
}

/// Every distinct value `f` gives for the object `name` of `api`, in the
/// order the API server's watch delivered its versions (nothing is missed
/// between polls); stops watching on drop.
pub struct History<T> {
    values: std::sync::Arc<Mutex<Vec<T>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Clone> History<T> {
    /// The values seen so far (consecutive repeats collapsed).
    pub fn values(&self) -> Vec<T> {
        self.values.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl<T> Drop for History<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts recording [`History`] of `f` over the object `name` of `api`.
pub fn record<K, T, F>(api: Api<K>, name: &str, f: F) -> History<T>
where
    K: kube::Resource + Clone + Debug + k8s_openapi::serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
    T: PartialEq + Send + 'static,
    F: Fn(&K) -> T + Send + 'static,
{
    use futures::StreamExt;
    use kube::runtime::watcher;
    let values = std::sync::Arc::new(Mutex::new(Vec::new()));
    let sink = values.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, config));
        while let Some(event) = events.next().await {
            let (watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) = (match event {
                Ok(e) => e,
                Err(_) => continue,
            }) else {
                continue;
            };
            let value = f(&obj);
            if let Ok(mut v) = sink.lock()
                && v.last() != Some(&value)
            {
                v.push(value);
            }
        }
    });
    History { values, task }
}

/// A `kubectl port-forward` to a local port; stopped on drop.
pub struct PortForward {
    child: Child,
    /// The local end.
    pub local: SocketAddr,
}

impl PortForward {
    /// Forwards a free port on 127.0.0.1 to `port` of `target` (e.g.
    /// `svc/e2e`) in `ns`, and waits until kubectl says it listens.
    pub fn start(ns: &str, target: &str, port: u16) -> Result<PortForward, String> {
        let mut child = Command::new("kubectl")
            .args([
                "port-forward",
                "-n",
                ns,
                target,
                &format!(":{port}"),
                "--address",
                "127.0.0.1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run kubectl port-forward: {e}"))?;
        let stdout = child.stdout.take().ok_or("kubectl port-forward has no stdout")?;
        let stderr = child.stderr.take().ok_or("kubectl port-forward has no stderr")?;
        let errors = std::sync::Arc::new(Mutex::new(String::new()));
        let collected = errors.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut text) = collected.lock() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // "Forwarding from 127.0.0.1:40213 -> 9092"; keep draining afterwards.
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let (Some(local), Some(tx)) = (forwarding_from(&line), tx.take()) {
                    let _ = tx.send(local);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(local) => Ok(PortForward { child, local }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let said = errors.lock().map(|t| t.clone()).unwrap_or_default();
                Err(format!(
                    "kubectl port-forward -n {ns} {target} :{port} did not start listening within 30 s: {said}"
                ))
            }
        }
    }
}

/// The local address of kubectl's "Forwarding from 127.0.0.1:40213 -> 9092".
pub fn forwarding_from(line: &str) -> Option<SocketAddr> {
    line.strip_prefix("Forwarding from ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the tests reach a cluster's client Service (`FLYMQ_E2E_CLIENT_ACCESS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAccess {
    /// `kubectl port-forward svc/<cluster> :9092` (the default). Writes are
    /// forwarded to partition leaders by the broker at the other end, and
    /// reads are served by any replica, so one broker is enough for topics
    /// whose replication factor equals the number of brokers.
    PortForward,
    /// `<cluster>.<namespace>.svc:9092` directly: the tests run in a pod.
    InCluster,
    /// Not at all: the produce/consume steps are skipped (and say so).
    None,
}

/// The access mode `FLYMQ_E2E_CLIENT_ACCESS` asks for.
pub fn client_access() -> Result<ClientAccess, String> {
    match env_or("FLYMQ_E2E_CLIENT_ACCESS", "port-forward").as_str() {
        "port-forward" => Ok(ClientAccess::PortForward),
        "in-cluster" => Ok(ClientAccess::InCluster),
        "none" => Ok(ClientAccess::None),
        other => Err(format!(
            "FLYMQ_E2E_CLIENT_ACCESS={other} is not one of port-forward, in-cluster, none"
        )),
    }
}

/// A connected FlyMQ client for a cluster's client Service, and the
/// port-forward it goes through (if any).
pub struct ServiceClient {
    /// The client.
    pub client: flymq_client::Client,
    /// Where it connected.
    pub bootstrap: String,
    _forward: Option<PortForward>,
}

/// The `username` and `password` keys of Secret `secret` in `ns`.
pub async fn secret_credentials(ns: &str, secret: &str) -> Result<flymq_client::Credentials, String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot configure the Kubernetes client: {e}"))?;
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, ns);
    let s = api
        .get(secret)
        .await
        .map_err(|e| format!("reading Secret {ns}/{secret}: {e}"))?;
    let text = |key: &str| -> Result<String, String> {
        let bytes = s
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| format!("Secret {ns}/{secret} has no key '{key}'"))?;
        String::from_utf8(bytes.0.clone()).map_err(|_| format!("key '{key}' of Secret {ns}/{secret} is not UTF-8"))
    };
    Ok(flymq_client::Credentials::new(text("username")?, text("password")?))
}

/// Connects to the client Service of `cluster` in `ns` as the cluster's
/// admin (its Secret `<cluster>-admin`: clusters run with authentication
/// on), or returns `None` after printing, for `test`, why the calling step
/// is skipped: access `none`, or `port-forward` without kubectl on PATH. A
/// failure to connect when access is possible is an error, not a skip.
pub async fn service_client(test: &str, ns: &str, cluster: &str, what: &str) -> Result<Option<ServiceClient>, String> {
    let credentials = secret_credentials(ns, &format!("{cluster}-admin")).await?;
    service_client_as(test, ns, cluster, what, credentials).await
}

/// [`service_client`] authenticated with `credentials`.
pub async fn service_client_as(
    test: &str,
    ns: &str,
    cluster: &str,
    what: &str,
    credentials: flymq_client::Credentials,
) -> Result<Option<ServiceClient>, String> {
    service_client_with(test, ns, cluster, what, credentials, None).await
}

/// [`service_client_as`] over TLS with `tls` (`None`: plaintext).
pub async fn service_client_with(
    test: &str,
    ns: &str,
    cluster: &str,
    what: &str,
    credentials: flymq_client::Credentials,
    tls: Option<flymq_security::tls::ClientTlsOptions>,
) -> Result<Option<ServiceClient>, String> {
    let (bootstrap, forward) = match client_access()? {
        ClientAccess::None => {
            step(
                test,
                &format!("SKIPPED step '{what}': FLYMQ_E2E_CLIENT_ACCESS=none, the client Service is not reached"),
            );
            return Ok(None);
        }
        ClientAccess::PortForward if !on_path("kubectl") => {
            step(
                test,
                &format!(
                    "SKIPPED step '{what}': cannot reach the client Service {cluster}.{ns}.svc:9092 from here \
                     (kubectl is not on PATH for a port-forward; run the tests in a pod with \
                     FLYMQ_E2E_CLIENT_ACCESS=in-cluster)"
                ),
            );
            return Ok(None);
        }
        ClientAccess::PortForward => {
            let forward = PortForward::start(ns, &format!("svc/{cluster}"), 9092)?;
            (forward.local.to_string(), Some(forward))
        }
        ClientAccess::InCluster => (format!("{cluster}.{ns}.svc:9092"), None),
    };
    let user = credentials.username.clone();
    let mut config = flymq_client::ClientConfig::new([bootstrap.clone()]);
    config.credentials = Some(credentials);
    config.tls = tls;
    let client = flymq_client::Client::connect(config)
        .await
        .map_err(|e| format!("cannot connect to the client Service at {bootstrap} as '{user}': {e}"))?;
    step(
        test,
        &format!("connected to the client Service through {bootstrap} as '{user}'"),
    );
    Ok(Some(ServiceClient {
        client,
        bootstrap,
        _forward: forward,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_root_holds_the_chart_and_manifests() {
        assert!(repo_root().join("charts/flymq-operator/Chart.yaml").is_file());
        assert!(repo_root().join("deploy/kustomize/kustomization.yaml").is_file());
    }

    #[test]
    fn kubectl_port_forward_output_is_parsed() {
        assert_eq!(
            forwarding_from("Forwarding from 127.0.0.1:40213 -> 9092"),
            Some("127.0.0.1:40213".parse().expect("addr"))
        );
        assert_eq!(
            forwarding_from("Forwarding from [::1]:40213 -> 9092"),
            Some("[::1]:40213".parse().expect("addr"))
        );
        assert_eq!(forwarding_from("Handling connection for 40213"), None);
    }

    #[test]
    fn install_picks_helm_then_kustomize_then_in_process() {
        assert_eq!(operator_mode_from("install", true, true), Ok(OperatorMode::Helm));
        assert_eq!(operator_mode_from("install", false, true), Ok(OperatorMode::Kustomize));
        assert_eq!(operator_mode_from("install", false, false), Ok(OperatorMode::InProcess));
        assert_eq!(operator_mode_from("deployed", true, true), Ok(OperatorMode::Deployed));
        assert_eq!(operator_mode_from("helm", false, false), Ok(OperatorMode::Helm));
        assert!(operator_mode_from("helmet", true, true).is_err());
    }

    #[test]
    fn tools_are_found_on_path() {
        assert!(on_path("sh"), "sh is on every PATH");
        assert!(!on_path("flymq-e2e-no-such-tool"));
    }
}
