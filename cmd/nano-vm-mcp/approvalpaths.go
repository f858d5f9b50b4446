package main

import (
	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/catalog"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// warnClosedApprovalPaths logs one warning at start naming the approval
// states nobody can decide (program.ClosedApprovalStates, the rule), and what would open a path: with the README's
// client configurations a KYC run would otherwise wait at its approval
// until it times out, and nothing would say why.
func warnClosedApprovalPaths(log *zap.Logger, progs []catalog.Entry, approvers *access.Approvers, elicit bool) {
	served := make([]*program.Program, len(progs))
	for i, e := range progs {
		served[i] = e.Program
	}
	closed := program.ClosedApprovalStates(served, approvers.HasRole, elicit)
	if len(closed) == 0 {
		return
	}
	log.Warn("no approval path is open for these approval states: their runs wait until their deadline. Start serve with --approval-channel elicitation (for clients that show elicitation forms), or with --approvers FILE naming an approver of each role",
		zap.Strings("states", closed))
}
