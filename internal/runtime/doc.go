/*
Package runtime is the pure core of nano-vm-mcp: a run of a program is a
deterministic state machine, and this package is that machine and nothing
else. It turns (program, run state, input) into events; everything else,
storage, sealing, keys, clocks, ids, logging and networking, belongs to its
caller, the shell (internal/service).

# The loop

The caller owns the run and drives it like this, one input at a time per
run:

 1. Fold the run: run, err := Fold(p, events), from the events it stored
    (or keep the run it adopted last time).
 2. Build an input (Start, Submit, Decide, Cancel, Tick, Fault or Erase,
    or the outcome of a runtime tool call: ToolResult, ToolFailure,
    ToolUnknown, ResolveTool) and stamp it with the caller's own clock
    reading (the At field); the core never asks for the time. A Start also
    carries the run id the caller made, and the tool states the runtime
    runs (Executors).
 3. Call res, err := Apply(p, run, in). Apply does not modify run.
 4. Persist res.Events durably, in order, in one atomic append: sealed,
    chained and added to the run's tree by the shell (docs/trace-format.md),
    with the run's index row, in one transaction.
 5. Only then adopt res.Run as the run's state and answer whoever sent the
    input. No answer may leave before the events it reports are durable,
    as in etcd-io/raft, where no message leaves before the state it depends
    on is persisted. If the append fails, the run is what it was before
    step 3, and the caller answers with the failure; if the store refuses
    the append because another writer got there first, the caller folds
    the run again and repeats from step 2.

res.Run is by construction the fold of the events the run had plus
res.Events: Apply folds each event into a scratch copy as it emits it,
with the same code Fold uses.

# Runtime-executed tools

When res.Run.Call is set after step 5, the run waits on a tool call the
runtime makes (toolcall.go): the shell invokes the tool, only now that the
intent (tool_call_started) is durable, and reports the outcome as the next
input, from step 1. The core decides what the outcome does (retry,
on_error, tool_failed, waiting for the operator); the shell never does.

# Rejected inputs

An input the run refuses (a stale seq, a schema violation, a guard that
denies, an expired deadline, …) returns a *Rejection, with a stable Code,
and, with it, the events that record the refusal (submission_rejected and
whatever it implies). The caller persists those events exactly as in step
4 before it answers with the rejection: a refusal is part of the trace. A
few outcomes carry no events at all: an exact duplicate of the last
accepted submission (Result.Duplicate: the original answer stands), an
approval the pending decision already counts (Result.PendingApproval), a
throttled refusal past the task's cap, and a start that cannot begin (no
run exists to record it in).

# What Apply never does

Apply does no I/O (no files, network, database or logging), reads no
clock (time is only what the input's At says) and draws no randomness
(ids and keys come from the caller). The same program, run and input give
byte-identical events, so a trace can be replayed (Replay) and a receipt's
policy claims re-checked (CheckPolicy) by refolding the recorded inputs.
A test (pure_test.go, also run by make check) fails the build if a file of
this package imports the store, the keyring, the logger, the service, the
file system, the network or a source of randomness, or calls time.Now.
*/
package runtime
