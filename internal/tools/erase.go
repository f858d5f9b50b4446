package tools

import (
	"context"
	"errors"
	"strings"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/service"
)

func (h *handlers) eraseSubject(ctx context.Context, c access.Principal, req request) (any, error) {
	if c.Profile != access.ProfileOperator {
		return nil, errorf(CodeForbidden, "erase_subject is for the operator profile")
	}
	var args EraseSubjectArgs
	if err := req.bind(&args); err != nil {
		return nil, err
	}
	res, err := h.Service.EraseSubject(ctx, service.EraseOptions{
		SubjectID: args.SubjectID, Subject: args.Subject, Reason: args.Reason, Principal: c.ID,
	})
	var rej *runtime.Rejection
	switch {
	case err != nil && res.Status != "":
		// The key is gone, but a run's subject_erased event could not be
		// appended. The cause stays in the log, as for internal errors.
		h.Log.Error("erase_subject incomplete", zap.Strings("runs", res.Runs), zap.Strings("recorded", res.Recorded), zap.Error(err))
		return nil, errorf(CodeErasureIncomplete, "the subject's key is destroyed, but recording the erasure in its runs failed part way (runs %s; recorded now %s)",
			strings.Join(res.Runs, ", "), strings.Join(res.Recorded, ", "))
	case errors.As(err, &rej) && rej.Code == runtime.CodeInvalidInput:
		// An unknown subject name: the arguments are wrong, not a run input.
		return nil, errorf(CodeInvalidArguments, "%s", rej.Message)
	case err != nil:
		return nil, fromRuntime(err, nil)
	}
	return EraseSubjectResult{Status: res.Status, Subjects: res.Subjects, Runs: res.Runs, Recorded: res.Recorded}, nil
}
