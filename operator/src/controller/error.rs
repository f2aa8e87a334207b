//! Typed reconcile errors with a stable category (used as a metrics label
//! and in conditions, so dashboards and alerts do not depend on messages).

use crate::admin::AdminError;
use crate::builders::BuildError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be turned into objects; retrying will not help until
    /// the spec changes.
    #[error("invalid FlyMQCluster spec: {0}")]
    InvalidSpec(#[from] BuildError),
    /// A Kubernetes API call failed (usually transient).
    #[error("Kubernetes API call failed while {action}: {source}")]
    Kube {
        /// What the operator was doing.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A broker admin call failed or is not available.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// An object could not be serialised for an apply.
    #[error("cannot serialise {what}: {source}")]
    Serialize {
        /// Which object.
        what: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Stable, low-cardinality category of the error.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Kube { .. } => "kube_api",
            Error::Admin(AdminError::NotAvailable { .. }) => "admin_unavailable",
            Error::Admin(AdminError::Failed { .. }) => "admin_api",
            Error::Serialize { .. } => "serialize",
        }
    }

    /// Wraps a kube client error with what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_stable() {
        assert_eq!(
            Error::InvalidSpec(BuildError::MissingMetadata("name")).category(),
            "invalid_spec"
        );
        assert_eq!(
            Error::Admin(AdminError::NotAvailable { operation: "x" }).category(),
            "admin_unavailable"
        );
    }
}
