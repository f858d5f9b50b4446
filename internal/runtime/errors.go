package runtime

import "fmt"

// Code is a stable, machine-readable rejection code.
type Code string

// Rejection codes. Attempt codes are the submitter's own failures and count
// against max_attempts; protocol codes (a lost response retried, the loser
// of a race, a client confused about where the run is) never use up a run's
// budget.
const (
	// Attempts.
	CodeSchemaViolation  Code = "schema_violation"
	CodeCapabilityDenied Code = "capability_denied"
	CodeGuardDenied      Code = "guard_denied"

	// Protocol rejections.
	CodeStaleSeq           Code = "stale_seq"
	CodeWrongState         Code = "wrong_state"
	CodeDefinitionMismatch Code = "definition_mismatch"
	CodeApprovalRequired   Code = "approval_required"
	CodeRunFinished        Code = "run_finished"
	CodeDeadlineExceeded   Code = "deadline_exceeded"
	CodeInvalidInput       Code = "invalid_input"
	CodeRunExists          Code = "run_exists"
	CodeNoSuchRun          Code = "no_such_run"
	CodeNoSuchProgram      Code = "no_such_program"
	// CodeIdempotencyConflict: a start repeated an idempotency key that
	// already started a run with another input (or another lab flag).
	CodeIdempotencyConflict Code = "idempotency_conflict"
	// CodeForbidden: separation of duties refused a decision, because its
	// approver started the run or submitted one of its answers, or because
	// the elicitation channel already counts toward a four-eyes decision.
	// It is recorded without the decision.
	CodeForbidden Code = "forbidden"
	// CodeThrottled: the task has recorded max_uncounted_rejections
	// uncounted rejections; the next one is recorded under this code, and
	// later ones are refused with it and not recorded.
	CodeThrottled Code = "throttled"
)

// CountsAsAttempt reports whether a rejection with code c uses up an attempt.
func (c Code) CountsAsAttempt() bool {
	switch c {
	case CodeSchemaViolation, CodeCapabilityDenied, CodeGuardDenied:
		return true
	}
	return false
}

// Rejection is the typed error for an input the core refused. The events
// returned beside it record the rejection; the run is otherwise unchanged.
type Rejection struct {
	Code    Code
	Message string
	Details []string // e.g. schema violations, one per line
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("%s: %s", r.Code, r.Message)
}

// Reject is a rejection with the given code and message.
func Reject(code Code, format string, args ...any) *Rejection {
	return &Rejection{Code: code, Message: fmt.Sprintf(format, args...)}
}
