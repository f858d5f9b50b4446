package service

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"go.uber.org/zap"

	"github.com/nano-vm/nano-vm-mcp/internal/runtime"
	"github.com/nano-vm/nano-vm-mcp/internal/trace"
	"github.com/nano-vm/nano-vm-mcp/internal/tracestore"
)

// Erasure outcomes (EraseResult.Status).
const (
	// ErasureErased: the subject's key existed and is destroyed now.
	ErasureErased = "erased"
	// ErasureAlreadyErased: the key was destroyed before; runs that lacked
	// their subject_erased event (an erasure cut short) have it now.
	ErasureAlreadyErased = "already_erased"
	// ErasureUnknownSubject: no run and no key belong to the subject.
	ErasureUnknownSubject = "unknown_subject"
)

// EraseOptions name a data subject to erase.
type EraseOptions struct {
	// SubjectID is the subject's id as the run inputs hold it at the
	// subject's id path (a customer id, say). Only its keyed hash is ever
	// stored or logged.
	SubjectID string
	// Subject limits the erasure to one subject name of the programs
	// ("customer"); empty means every name any known program declares.
	Subject   string
	Reason    string
	Principal string
}

// EraseResult is what an erasure did.
type EraseResult struct {
	Status string `json:"status"` // erased, already_erased or unknown_subject
	// Subjects are the keyed ids of the subject's keys destroyed now.
	Subjects []string `json:"subjects"`
	// Runs are every run that holds the subject's data, sorted.
	Runs []string `json:"runs"`
	// Recorded are the runs that got a subject_erased event now (all of
	// Runs on a first erasure; those an interrupted one missed after).
	Recorded []string `json:"recorded"`
}

// EraseSubject crypto-shreds a data subject: it destroys the subject's key
// (internal/subjectkeys: the key and every stale copy of it in the
// database become undecryptable), appends a subject_erased event to each
// of the subject's runs, cancelling those still running, and drops the
// runs' opened state from this process. Every view of those runs then
// shows the erased marker in place of the subject's data; traces and
// receipts still verify, since they only ever held ciphertext.
//
// Erasing again, or a subject nobody knows, is a result, not an error.
func (s *Service) EraseSubject(ctx context.Context, o EraseOptions) (EraseResult, error) {
	if o.SubjectID == "" {
		return EraseResult{}, runtime.Reject(runtime.CodeInvalidInput, "name the subject to erase by its id")
	}
	names, err := s.subjectNames(ctx)
	if err != nil {
		return EraseResult{}, err
	}
	if o.Subject != "" {
		if !names[o.Subject] {
			return EraseResult{}, runtime.Reject(runtime.CodeInvalidInput, "no program declares a data subject named %q", o.Subject)
		}
		names = map[string]bool{o.Subject: true}
	}
	// The keyed ids the subject may go by, and their runs and keys.
	var withKey []string
	runSet := map[string][]string{} // run → the subject's keyed ids in it
	for name := range names {
		id := trace.SubjectID(s.sealer.secret, name, "id:"+o.SubjectID)
		runs, err := s.store.RunsOfSubject(ctx, id)
		if err != nil {
			return EraseResult{}, err
		}
		for _, r := range runs {
			runSet[r] = append(runSet[r], id)
		}
		// Whether the key exists is the store's to say: opening it (and
		// caching it) only to destroy it would be wasted.
		switch _, err := s.store.Key(ctx, id); {
		case err == nil:
			withKey = append(withKey, id)
		case !errors.Is(err, tracestore.ErrNotFound):
			return EraseResult{}, err
		}
	}
	res := EraseResult{Status: ErasureUnknownSubject, Subjects: []string{}, Runs: []string{}, Recorded: []string{}}
	for r := range runSet {
		res.Runs = append(res.Runs, r)
	}
	sort.Strings(res.Runs)
	// Hold every affected run, in id order (as every multi-run holder
	// does, so two erasures cannot deadlock), from before the keys go to
	// after the runs record it: no step of these runs can be sealing with
	// a key being destroyed, or make the subject a fresh key meanwhile.
	held := make(map[string]*liveRun, len(res.Runs))
	defer func() {
		for id, lr := range held {
			s.mu.Lock()
			s.dropLocked(id, lr) // the next reader folds the erased trace
			s.mu.Unlock()
			s.release(lr)
		}
	}()
	for _, id := range res.Runs {
		lr := s.claim(id)
		held[id] = lr
		if lr.run == nil {
			if err := s.load(ctx, lr, id); err != nil {
				return EraseResult{}, err
			}
		}
	}
	if len(withKey) > 0 {
		sort.Strings(withKey)
		deleted, err := s.sealer.keys.Shred(ctx, withKey)
		if err != nil {
			return EraseResult{}, fmt.Errorf("erase: %w", err)
		}
		res.Subjects = append(res.Subjects, deleted...)
	}
	switch {
	case len(res.Subjects) > 0:
		res.Status = ErasureErased
	case len(res.Runs) > 0:
		res.Status = ErasureAlreadyErased
	}
	for _, runID := range res.Runs {
		recorded, err := s.recordErasure(ctx, held[runID], runID, runSet[runID], o)
		if err != nil {
			return res, fmt.Errorf("erase: the keys are destroyed, but recording it in run %s failed (erase again to finish): %w", runID, err)
		}
		if recorded {
			res.Recorded = append(res.Recorded, runID)
		}
	}
	s.log.Info("data subject erased", zap.String("status", res.Status), zap.Strings("subjects", res.Subjects), zap.Int("runs", len(res.Runs)), zap.String("principal", o.Principal))
	return res, nil
}

// subjectNames are the data subject names declared by every program the
// store holds, which includes every program a run was pinned to.
func (s *Service) subjectNames(ctx context.Context) (map[string]bool, error) {
	hashes, err := s.store.ProgramHashes(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, h := range hashes {
		p, err := s.programByHash(ctx, h)
		if err != nil {
			return nil, err
		}
		for _, sub := range p.Subjects {
			names[sub.Name] = true
		}
	}
	return names, nil
}

// recordErasure appends to a held run a subject_erased event for each of
// the subject's keyed ids the run does not record as erased yet.
func (s *Service) recordErasure(ctx context.Context, lr *liveRun, runID string, subjects []string, o EraseOptions) (bool, error) {
	events, err := s.Events(ctx, runID)
	if err != nil {
		return false, err
	}
	done := map[string]bool{}
	for _, e := range events {
		if e.Type == runtime.EventSubjectErased && e.Erasure != nil {
			done[e.Erasure.Subject] = true
		}
	}
	recorded := false
	for _, sub := range subjects {
		if done[sub] {
			continue
		}
		rec := runtime.ErasureRecord{Subject: sub, Reason: o.Reason, Principal: o.Principal}
		if _, err := s.applyLocked(ctx, lr, runID, runtime.Erase{Record: rec, At: s.clock()}, nil); err != nil {
			return recorded, err
		}
		recorded = true
	}
	return recorded, nil
}

// evict drops a run's in-process state, waiting for whoever holds it.
func (s *Service) evict(runID string) {
	s.mu.Lock()
	lr := s.runs[runID]
	if lr == nil {
		s.mu.Unlock()
		return
	}
	lr.refs++
	s.mu.Unlock()
	lr.mu.Lock()
	s.mu.Lock()
	s.dropLocked(runID, lr)
	s.mu.Unlock()
	s.release(lr)
}

// RefreshKeys notices an erasure made by another process sharing the
// store: when the store's key epoch has moved, it empties the key cache
// and drops every run's opened state, so that nothing erased elsewhere
// stays readable here. The server calls it periodically.
func (s *Service) RefreshKeys(ctx context.Context) error {
	changed, err := s.sealer.keys.Refresh(ctx)
	if err != nil || !changed {
		return err
	}
	s.mu.Lock()
	ids := make([]string, 0, len(s.runs))
	for id := range s.runs {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		s.evict(id)
	}
	s.log.Info("key epoch moved: cached keys and runs dropped", zap.Int("runs", len(ids)))
	return nil
}
