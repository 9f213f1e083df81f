// Package failpoint lets the chaos suite crash or stall a worker at a named
// step of the order flow (after_reserve, after_persist, before_commit,
// before_ack, and after_transition, between a checkout row's move and its
// holds following it). Production binaries carry none of it: the real
// implementation is compiled only with the build tag "failpoints", and
// without it Inject is an empty function the compiler removes.
//
// With the tag, STOCKGATE_FAILPOINTS arms them, as a comma-separated list
// of step=action[@n]:
//
//	after_persist=kill@50     SIGKILL this process the 50th time the step is reached
//	after_reserve=sleep:2s    sleep 2s every time (ignoring cancellation)
//	before_ack=kill           SIGKILL the first time
//
// n counts hits of that step in this process, across all goroutines.
package failpoint
