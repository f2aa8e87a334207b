//! A scripted fake Kubernetes API server for reconcile tests (kube-rs's
//! tower-test mock-service pattern): each expected request, in order, and
//! its reply; every request body is recorded for assertions.

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

/// The test side of the mock service.
pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// How the fake API server answers one request.
pub enum Reply {
    /// 404 Not Found.
    NotFound,
    /// 200 with the request body.
    Echo,
    /// 200 with this object.
    Json(Value),
    /// 200 with this object, its status replaced by the patch's.
    WithStatus(Value),
    /// This code with a plain-text body (what kube-apiserver sends for a
    /// resource type it does not serve: 404 `404 page not found`).
    Text(u16, &'static str),
    /// This code with a `Status` object of this reason, as kube-apiserver
    /// refuses a request (403 `Forbidden`, 500 `InternalError`, ...).
    Failure(u16, &'static str),
}

/// A request the fake API server expects, in order.
pub struct Step {
    /// HTTP method.
    pub method: &'static str,
    /// URL path.
    pub path: &'static str,
    /// The answer.
    pub reply: Reply,
    /// Runs when the request arrives, before the answer (asserts what must
    /// have happened elsewhere by then).
    pub check: Option<Box<dyn FnOnce() + Send>>,
}

/// Shorthand for a [`Step`].
pub fn step(method: &'static str, path: &'static str, reply: Reply) -> Step {
    Step {
        method,
        path,
        reply,
        check: None,
    }
}

impl Step {
    /// Runs `check` when this request arrives.
    pub fn checking(mut self, check: impl FnOnce() + Send + 'static) -> Step {
        self.check = Some(Box::new(check));
        self
    }
}

/// What the reconciler sent.
#[derive(Debug)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// JSON body (`Null` when empty).
    pub body: Value,
}

/// A client wired to a fresh mock service.
pub fn client() -> (kube::Client, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(svc, "default"), handle)
}

/// Answers the scripted requests in order and returns what was sent. The
/// handle is dropped afterwards, so any further request fails.
pub async fn serve(mut handle: Handle, steps: Vec<Step>) -> Vec<Seen> {
    serve_ref(&mut handle, steps).await
}

/// Like [`serve`], leaving the handle to the caller (to check that no
/// further request comes).
pub async fn serve_ref(handle: &mut Handle, steps: Vec<Step>) -> Vec<Seen> {
    let mut seen = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        let (req, send) = handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("request {i} ({} {}) never came", step.method, step.path));
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let bytes = req.into_body().collect_bytes().await.expect("request body");
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON request body")
        };
        assert_eq!(
            (method.as_str(), path.as_str()),
            (step.method, step.path),
            "request {i} is not the expected one"
        );
        if let Some(check) = step.check {
            check();
        }
        if let Reply::Text(code, text) = step.reply {
            let response = Response::builder()
                .status(code)
                .header("content-type", "text/plain; charset=utf-8")
                .body(Body::from(text.as_bytes().to_vec()))
                .expect("response");
            send.send_response(response);
            seen.push(Seen {
                method: method.clone(),
                path,
                query,
                body,
            });
            continue;
        }
        let (code, reply) = match step.reply {
            Reply::Text(..) => unreachable!("answered above"),

            Reply::NotFound => (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "NotFound", "code": 404, "message": "not found"}),
            ),
            Reply::Failure(code, reason) => (
                code,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": reason, "code": code, "message": format!("refused: {reason}")}),
            ),
            Reply::Echo => (200, body.clone()),
            Reply::Json(v) => (200, v),
            Reply::WithStatus(mut c) => {
                c["status"] = body["status"].clone();
                (200, c)
            }
        };
        let response = Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&reply).expect("reply serialises")))
            .expect("response");
        send.send_response(response);
        seen.push(Seen {
            method,
            path,
            query,
            body,
        });
    }
    seen
}
