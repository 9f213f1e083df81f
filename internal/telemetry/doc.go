// Package telemetry owns stockgate's observability plumbing: it installs the
// global OpenTelemetry TracerProvider, MeterProvider and W3C propagator,
// exposes the Prometheus registry behind /metrics, carries trace context
// across Asynq task headers, turns pool, queue and stock levels into
// observable gauges, and builds the JSON logger that stamps trace ids and
// keeps passwords out of the logs.
//
// It must not know about orders, stock rules or SQL: business spans and
// instruments are created by their own packages through the global otel API,
// and the gauges here read levels only through the callbacks they are given.
//
// Setup is called once per process, before anything else touches otel: an
// instrument created from the global MeterProvider binds to the first
// provider installed, so a second Setup in the same process only affects
// instruments created after it.
package telemetry
