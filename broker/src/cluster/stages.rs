//! Timestamps of a replicated write's stages, to see where its time goes.
//!
//! Off unless the log filter enables the `flymq::stages` target at TRACE
//! (`--log-level info,flymq::stages=trace`): each stage is then one log
//! line with the group and the entry's index. `scripts/stage-trace.py`
//! reads the logs of every broker and prints the median time of each stage
//! after the command was submitted (docs/observability.md, "Where a
//! replicated write's time goes"). Disabled, a mark costs one check of a
//! cached filter decision.

/// Records that `group`'s entry `index` reached `stage` (index 0 when the
/// entry has no index yet).
pub fn mark(stage: &'static str, group: u64, index: u64) {
    tracing::trace!(target: "flymq::stages", stage, group, index);
}
