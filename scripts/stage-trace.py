#!/usr/bin/env python3
"""Where a replicated write's time goes, from the brokers' stage logs.

Run every broker with `--log-level info,flymq::stages=trace` (JSON logs, one
file per broker), send writes one at a time (for example
`flymq-bench run --workloads latency`), then:

    scripts/stage-trace.py broker-0.log broker-1.log broker-2.log

For each write, the leader's stages are timed from its submission, and the
stages on the follower that answered first (the one that completes a
majority of three) likewise; the script prints the median and the 90th
percentile of each stage over all writes. With several writes in flight per
group the matching of commands to entries is approximate: measure one at a
time. The brokers' clocks are compared directly, so run them on one machine.

Stages (broker/src/cluster/stages.rs):
  submitted          a command is queued for the group's proposer (leader)
  proposed           its batch is handed to the group's Raft core
  log_queued         its entry is cached and queued for the log writer
  log_write_started  the log writer thread starts writing it
  log_synced         the write and its WAL fsync are done
  append_sent        an AppendEntries carrying it leaves for a follower
  append_received    the follower has decoded that request
  append_answered    the follower answers (after its own fsync)
  append_replied     the leader has the answer
  apply_started      the state machine gets the committed entry
  apply_running      its apply runs on a blocking thread
  apply_written      the apply's RocksDB write is done
  apply_done         back on the async worker
  responded          the command's reply is handed to the connection
"""

import bisect
import json
import statistics
import sys
from collections import defaultdict
from datetime import datetime

META_GROUP = 0
# A submission more than this long before its entry is queued is not its own.
MATCH_WINDOW_US = 5_000

# Marked before the entry has an index: matched to it by time.
UNINDEXED = ("submitted", "proposed")
LEADER_STAGES = [
    "log_queued", "log_write_started", "log_synced", "append_sent", "append_replied",
    "apply_started", "apply_running", "apply_written", "apply_done", "responded",
]
# Marked once per apply call with its last index: an apply call covers
# every entry up to that index (several when entries commit together).
COVERING = {"apply_started", "apply_running", "apply_written", "apply_done", "responded"}
FOLLOWER_STAGES = ["append_received", "log_queued", "log_write_started", "log_synced", "append_answered"]


def micros(timestamp):
    """RFC 3339 timestamp (as tracing-subscriber writes it) to microseconds."""
    return round(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1_000_000)


def read_stages(path):
    """(stage, group, index) -> first time seen, and (stage, group) -> the
    times of the stages marked before an index is known."""
    first = {}
    unindexed = defaultdict(list)
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            if '"flymq::stages"' not in line:
                continue
            # A line cut short or edited by hand is skipped, not fatal.
            try:
                event = json.loads(line)
                stage, group = event["stage"], int(event["group"])
                index, at = int(event["index"]), micros(event["timestamp"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if group == META_GROUP:
                continue
            if stage in UNINDEXED:
                unindexed[(stage, group)].append(at)
            else:
                first.setdefault((stage, group, index), at)
    for times in unindexed.values():
        times.sort()
    return first, unindexed


def latest_before(times, at):
    """The latest of the sorted `times` not after `at`, or None."""
    i = bisect.bisect_right(times, at)
    return times[i - 1] if i else None


def covering_time(stages, indices, name, group, index):
    """When the first `name` mark at or after `index` of `group` was made."""
    marked = indices.get((name, group), [])
    i = bisect.bisect_left(marked, index)
    return stages[(name, group, marked[i])] if i < len(marked) else None


def writes(brokers):
    """One dict per write: 'leader <stage>' / 'follower <stage>' -> µs after its submission."""
    for leader, (stages, unindexed) in enumerate(brokers):
        indices = defaultdict(list)
        for stage, group, index in stages:
            if stage in COVERING:
                indices[(stage, group)].append(index)
        for marked in indices.values():
            marked.sort()
        for (stage, group, index), queued in stages.items():
            if stage != "log_queued":
                continue
            start = latest_before(unindexed.get(("submitted", group), []), queued)
            if start is None or queued - start > MATCH_WINDOW_US:
                continue
            write = {}
            proposed = latest_before(unindexed.get(("proposed", group), []), queued)
            if proposed is not None and proposed >= start:
                write["leader proposed"] = proposed - start
            for name in LEADER_STAGES:
                if name in COVERING:
                    at = covering_time(stages, indices, name, group, index)
                else:
                    at = stages.get((name, group, index))
                if at is not None:
                    write["leader " + name] = at - start
            followers = []
            for other, (their, _) in enumerate(brokers):
                answered = their.get(("append_answered", group, index))
                if other != leader and answered is not None:
                    followers.append((answered, their))
            if followers:
                _, their = min(followers, key=lambda f: f[0])
                for name in FOLLOWER_STAGES:
                    at = their.get((name, group, index))
                    if at is not None:
                        write["follower " + name] = at - start
            yield write


def main(paths):
    if not paths or paths[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if paths else 2
    brokers = [read_stages(path) for path in paths]
    found = list(writes(brokers))
    if not found:
        print("stage-trace: no replicated writes found; were the brokers run with "
              "--log-level info,flymq::stages=trace?", file=sys.stderr)
        return 1
    columns = defaultdict(list)
    for write in found:
        for name, micros_after in write.items():
            columns[name].append(micros_after)
    rows = []
    for name, values in columns.items():
        values.sort()
        rows.append((statistics.median(values), values[int(len(values) * 0.9)], name, len(values)))
    print(f"{len(found)} writes; time after the command was submitted, in µs")
    print(f"| {'stage':<28} | {'median':>7} | {'p90':>7} | {'writes':>6} |")
    print(f"|{'-' * 30}|{'-' * 8}:|{'-' * 8}:|{'-' * 7}:|")
    for median, p90, name, count in sorted(rows):
        print(f"| {name:<28} | {median:>7.0f} | {p90:>7.0f} | {count:>6} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
