package program

// ClosedApprovalStates lists, as program/state (role R), every approval
// state of progs that nobody can decide: the elicitation channel is closed
// for it (elicit is false and the state does not set elicitation: true)
// and no approver has its role (hasRole). Its runs can only wait for their
// deadline. The order is the programs', then each program's states'.
func ClosedApprovalStates(progs []*Program, hasRole func(role string) bool, elicit bool) []string {
	if elicit {
		return nil
	}
	var closed []string
	for _, p := range progs {
		for _, name := range p.Order {
			st := p.States[name]
			if st.Kind != KindApproval || st.Elicitation || hasRole(st.Role) {
				continue
			}
			closed = append(closed, p.Name+"/"+name+" (role "+st.Role+")")
		}
	}
	return closed
}
