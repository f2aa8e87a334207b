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
    /// The finalizer could not be managed.
    #[error("cannot manage the {finalizer} finalizer: {message}")]
    Finalizer {
        /// The finalizer's name.
        finalizer: &'static str,
        /// What went wrong.
        message: String,
    },
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
            Error::Kube { .. } | Error::Finalizer { .. } => "kube_api",
            Error::Admin(AdminError::Unreachable { .. }) => "admin_unavailable",
            Error::Admin(AdminError::NotSupported { .. }) => "admin_unsupported",
            Error::Admin(AdminError::Rejected { .. }) => "admin_rejected",
            Error::Admin(AdminError::Credentials { .. }) => "admin_credentials",
            Error::Admin(AdminError::NotFound { .. } | AdminError::Failed { .. }) => "admin_api",
            Error::Serialize { .. } => "serialize",
        }
    }

    /// Flattens an error of [`kube::runtime::finalizer()`]: the reconcile's
    /// own error, or a failed finalizer patch.
    pub fn from_finalizer(finalizer: &'static str, e: kube::runtime::finalizer::Error<Error>) -> Error {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            F::AddFinalizer(source) => Error::Kube {
                action: format!("adding the {finalizer} finalizer"),
                source,
            },
            F::RemoveFinalizer(source) => Error::Kube {
                action: format!("removing the {finalizer} finalizer"),
                source,
            },
            F::UnnamedObject => Error::InvalidSpec(BuildError::MissingMetadata("name")),
            F::InvalidFinalizer => Error::Finalizer {
                finalizer,
                message: "not a valid JSON pointer segment".into(),
            },
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
        let admin = |e| Error::Admin(e).category();
        assert_eq!(
            admin(AdminError::Unreachable {
                operation: "x",
                message: "y".into()
            }),
            "admin_unavailable"
        );
        assert_eq!(
            admin(AdminError::NotSupported {
                feature: "f",
                operation: "x",
                message: "y".into()
            }),
            "admin_unsupported"
        );
        assert_eq!(
            admin(AdminError::Rejected {
                operation: "x",
                reason: "R",
                message: "y".into()
            }),
            "admin_rejected"
        );
        assert_eq!(
            admin(AdminError::Failed {
                operation: "x",
                message: "y".into()
            }),
            "admin_api"
        );
    }
}
