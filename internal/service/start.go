package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/program"
	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// StartOptions describe a run to start.
type StartOptions struct {
	Program   string // the program's name: runs use its latest definition
	Input     any    // decoded JSON
	Principal string // who starts the run, as the caller identified itself
	Lab       bool   // a laboratory run (see Started.Lab)
	// IdempotencyKey, when set, makes the start idempotent: the run id is
	// derived from the service secret, the principal, the program name and
	// the key, so that one (principal, program, key) starts one run, even
	// across restarts and processes sharing the store and the secret.
	// Repeating the start with the same input answers with that run
	// (Duplicate); another input is refused with idempotency_conflict.
	// 1 to 128 characters of [A-Za-z0-9._:-].
	IdempotencyKey string
}

// Start begins a run of the named program.
func (s *Service) Start(ctx context.Context, programName string, input any, principal string) (Answer, error) {
	return s.StartRun(ctx, StartOptions{Program: programName, Input: input, Principal: principal})
}

// StartRun begins a run as o describes, or, for an idempotency key that
// already started one, answers with that run as it stands now.
func (s *Service) StartRun(ctx context.Context, o StartOptions) (Answer, error) {
	s.mu.Lock()
	p := s.latest[o.Program]
	s.mu.Unlock()
	if p == nil {
		return Answer{}, runtime.Reject(runtime.CodeNoSuchProgram, "no program named %q", o.Program)
	}
	if o.IdempotencyKey == "" {
		a, err := s.startNew(ctx, p, s.newID(), o)
		return s.settle(ctx, a, err)
	}
	if !validIdempotencyKey(o.IdempotencyKey) {
		return Answer{}, runtime.Reject(runtime.CodeInvalidInput, "the idempotency key must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'", maxIdempotencyKey)
	}
	a, err := s.startOnce(ctx, p, s.idempotentID(o), o)
	return s.settle(ctx, a, err)
}

// maxIdempotencyKey bounds an idempotency key's length.
const maxIdempotencyKey = 128

func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		switch c := k[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// idempotentID derives the run id of an idempotent start:
// "run_" + hex(first 16 bytes of HMAC-SHA256(secret, "idempotency" 0x00
// principal 0x00 program 0x00 key)). Without the secret it can be neither
// guessed nor confirmed. Program names and keys hold no 0x00, so the
// message splits one way only.
func (s *Service) idempotentID(o StartOptions) string {
	mac := hmac.New(sha256.New, s.sealer.secret)
	mac.Write([]byte("idempotency\x00" + o.Principal + "\x00" + o.Program + "\x00" + o.IdempotencyKey))
	return "run_" + hex.EncodeToString(mac.Sum(nil)[:16])
}

func (s *Service) startInput(p *program.Program, id string, o StartOptions) runtime.Start {
	s.mu.Lock()
	executors := s.executors[p.Hash]
	s.mu.Unlock()
	return runtime.Start{RunID: id, Principal: o.Principal, Input: o.Input, Size: jsonSize(o.Input), Lab: o.Lab, Executors: executors, At: s.clock()}
}

// startNew starts a run under a fresh id.
func (s *Service) startNew(ctx context.Context, p *program.Program, id string, o StartOptions) (Answer, error) {
	res, err := runtime.Apply(p, nil, s.startInput(p, id, o))
	if err != nil {
		return Answer{}, err
	}
	lr := &liveRun{p: p, chain: &chain{tree: trace.NewTree()}}
	lr.mu.Lock()
	s.mu.Lock()
	if _, dup := s.runs[id]; dup {
		s.mu.Unlock()
		lr.mu.Unlock()
		return Answer{}, runtime.Reject(runtime.CodeRunExists, "run id %s is taken", id)
	}
	s.insertLocked(id, lr)
	s.mu.Unlock()
	defer s.release(lr)
	if err := s.append(ctx, lr, res.Run, res.Events, nil); err != nil {
		s.mu.Lock()
		s.dropLocked(id, lr)
		s.mu.Unlock()
		return Answer{}, err
	}
	lr.run = res.Run
	s.log.Info("run started", zap.String("run_id", id), zap.String("program", p.Name), zap.String("definition_hash", p.Hash), zap.Bool("lab", o.Lab))
	return answerFrom(res.Run, res.Events), nil
}

// startOnce starts the run of an idempotent start under its derived id,
// unless it exists (in this process or in the store): then it answers with
// it, when the start repeats it. Within the process, the run's lock
// serialises concurrent starts; across processes, the store refuses the
// second trace, and its writer answers with the first.
func (s *Service) startOnce(ctx context.Context, p *program.Program, id string, o StartOptions) (Answer, error) {
	lr := s.claim(id)
	defer s.release(lr)
	if lr.run == nil {
		err := s.load(ctx, lr, id)
		if rej := (*runtime.Rejection)(nil); errors.As(err, &rej) && rej.Code == runtime.CodeNoSuchRun {
			var res runtime.Result
			if res, err = runtime.Apply(p, nil, s.startInput(p, id, o)); err != nil {
				s.forget(id, lr)
				return Answer{}, err
			}
			lr.p, lr.chain = p, &chain{tree: trace.NewTree()}
			if err = s.append(ctx, lr, res.Run, res.Events, nil); err == nil {
				lr.run = res.Run
				s.log.Info("run started", zap.String("run_id", id), zap.String("program", p.Name), zap.String("definition_hash", p.Hash), zap.Bool("lab", o.Lab), zap.Bool("idempotent", true))
				return answerFrom(res.Run, res.Events), nil
			}
			if errors.Is(err, tracestore.ErrConflict) {
				// Another process stored the run first: answer with it.
				err = s.load(ctx, lr, id)
			}
		}
		if err != nil {
			lr.p, lr.chain = nil, nil
			s.forget(id, lr)
			return Answer{}, err
		}
	}
	return s.repeatedStart(ctx, lr, o)
}

// repeatedStart answers an idempotent start whose run exists: with the run
// as it stands, if the start repeats the one that began it.
func (s *Service) repeatedStart(ctx context.Context, lr *liveRun, o StartOptions) (Answer, error) {
	r := lr.run
	started, err := s.startedEvent(ctx, r.ID)
	if err != nil {
		return Answer{}, err
	}
	if r.Program.Name != o.Program || r.Principal != o.Principal || r.Lab != o.Lab || !runtime.SameJSON(started.Input, o.Input) {
		return Answer{}, runtime.Reject(runtime.CodeIdempotencyConflict, "the idempotency key %q was already used to start a run with a different input; repeat the original input to get that run, or use a new key for a new run", o.IdempotencyKey)
	}
	a := answerFrom(r, nil)
	a.Duplicate = true
	return a, nil
}

// startedEvent reads a run's run_started payload from the store, opened.
// (A run input whose subject was erased no longer compares equal to any.)
func (s *Service) startedEvent(ctx context.Context, runID string) (*runtime.Started, error) {
	recs, err := s.store.LoadPrefix(ctx, runID, 1)
	if err != nil {
		return nil, err
	}
	events, err := s.opened(ctx, recs)
	if err != nil {
		return nil, err
	}
	if events[0].Started == nil {
		return nil, fmt.Errorf("run %s: trace does not begin with run_started", runID)
	}
	return events[0].Started, nil
}
