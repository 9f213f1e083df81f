package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sampler runs a function in the background every interval and keeps its
// last answer, so that a gauge whose value needs a scan of Redis (the holds
// outstanding, the stock levels) answers a scrape from memory, in bounded
// time whatever the size of the catalogue. Get is the callback the Register
// functions take.
type Sampler[T any] struct {
	fn      func(context.Context) (T, error)
	every   time.Duration
	timeout time.Duration

	mu   sync.Mutex
	val  T
	at   time.Time // of the last sample that succeeded; zero before
	err  error     // of the last sample, nil when it succeeded
	quit chan struct{}
	done chan struct{}
	stop sync.Once
}

// NewSampler returns a Sampler of fn every interval (at least a
// millisecond). Each run of fn gets a context that ends after the interval.
func NewSampler[T any](every time.Duration, fn func(context.Context) (T, error)) *Sampler[T] {
	every = max(every, time.Millisecond)
	return &Sampler[T]{fn: fn, every: every, timeout: every}
}

// Start takes the first sample now, then one every interval, until Stop or
// until ctx ends.
func (s *Sampler[T]) Start(ctx context.Context) {
	s.quit, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.every)
		defer t.Stop()
		for {
			s.sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
}

// Stop stops the sampling and waits for a sample under way.
func (s *Sampler[T]) Stop() {
	if s.quit == nil {
		return
	}
	s.stop.Do(func() { close(s.quit) })
	<-s.done
}

func (s *Sampler[T]) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, err := s.fn(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	if err == nil {
		s.val, s.at = v, time.Now()
	}
}

// errNoSample is Get's answer before the first sample has succeeded.
var errNoSample = errors.New("not sampled yet")

// Get returns the last sample. It fails when none has succeeded in the last
// three intervals, so that a gauge goes missing instead of showing a value
// that stopped being true.
func (s *Sampler[T]) Get(context.Context) (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero T
	switch {
	case s.at.IsZero() && s.err == nil:
		return zero, errNoSample
	case s.at.IsZero():
		return zero, s.err
	case time.Since(s.at) > 3*s.every:
		return zero, fmt.Errorf("last sampled %v ago: %w", time.Since(s.at).Round(time.Second), cmpErr(s.err))
	}
	return s.val, nil
}

func cmpErr(err error) error {
	if err == nil {
		return errors.New("sampler stalled")
	}
	return err
}
