package main

import (
	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/access"
	"github.com/nano-vm/nano-vm-mcp/internal/catalog"
	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// closedApprovalStates lists, as program/state (role R), every approval
// state of progs that nobody can decide: the elicitation channel is closed
// for it (elicit is false and the state does not set elicitation: true)
// and no approver has its role. Its runs can only wait for their deadline.
func closedApprovalStates(progs []catalog.Entry, approvers *access.Approvers, elicit bool) []string {
	if elicit {
		return nil
	}
	var closed []string
	for _, sp := range progs {
		for _, name := range sp.Program.Order {
			st := sp.Program.States[name]
			if st.Kind != program.KindApproval || st.Elicitation || approvers.HasRole(st.Role) {
				continue
			}
			closed = append(closed, sp.Program.Name+"/"+name+" (role "+st.Role+")")
		}
	}
	return closed
}

// warnClosedApprovalPaths logs one warning at start naming the approval
// states nobody can decide, and what would open a path: with the README's
// client configurations a KYC run would otherwise wait at its approval
// until it times out, and nothing would say why.
func warnClosedApprovalPaths(log *zap.Logger, progs []catalog.Entry, approvers *access.Approvers, elicit bool) {
	closed := closedApprovalStates(progs, approvers, elicit)
	if len(closed) == 0 {
		return
	}
	log.Warn("no approval path is open for these approval states: their runs wait until their deadline. Start serve with --approval-channel elicitation (for clients that show elicitation forms), or with --approvers FILE naming an approver of each role",
		zap.Strings("states", closed))
}
