package service

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
)

// AddProgram registers a loaded program and its source. Runs started
// afterwards by name use it; runs pinned to an earlier definition keep
// theirs. A program with a state that requires runtime execution of a
// tool the service's registry lacks is refused (*program.Error, naming
// the file and the state), and so is one whose arguments a runtime-run
// tool's registry entry refuses (a downstream MCP tool's input schema). The program's runs start with the tool states
// the registry has as runtime-executed (runtime.Start.Executors).
func (s *Service) AddProgram(ctx context.Context, p *program.Program, source []byte) error {
	if err := checkExecution(p, s.calls.tools); err != nil {
		return err
	}
	if err := checkArguments(p, s.calls.tools); err != nil {
		return err
	}
	if err := s.store.PutProgram(ctx, p.Hash, source); err != nil {
		return fmt.Errorf("store program %s: %w", p.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.programs[p.Hash] = p
	s.latest[p.Name] = p
	s.sources[p.Hash] = bytes.Clone(source)
	s.executors[p.Hash] = executedStates(p, s.calls.tools)
	return nil
}

// Programs lists the registered programs by name.
func (s *Service) Programs() []*program.Program {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*program.Program, 0, len(s.latest))
	for _, p := range s.latest {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// programByHash finds a pinned program, loading its stored source if this
// process has not seen it (a run started before the program file changed).
func (s *Service) programByHash(ctx context.Context, hash string) (*program.Program, error) {
	s.mu.Lock()
	p := s.programs[hash]
	s.mu.Unlock()
	if p != nil {
		return p, nil
	}
	src, err := s.store.Program(ctx, hash)
	if err != nil {
		return nil, fmt.Errorf("program %s: %w", hash, err)
	}
	p, err = program.Load("stored:"+hash, src)
	if err != nil {
		return nil, err
	}
	if p.Hash != hash {
		return nil, fmt.Errorf("stored program %s hashes to %s", hash, p.Hash)
	}
	s.mu.Lock()
	s.programs[hash] = p
	s.mu.Unlock()
	return p, nil
}
