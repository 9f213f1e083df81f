package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// DefaultServiceName names the service when neither OTEL_SERVICE_NAME nor
// Config.ServiceName does.
const DefaultServiceName = "stockgate"

// Exporter names reported by Telemetry.Exporter besides the autoexport names
// ("otlp", "console").
const (
	// ExporterNone: spans are created (so logs still get trace ids) but not
	// exported, because nothing was configured or OTEL_TRACES_EXPORTER=none.
	ExporterNone = "none"
	// ExporterDisabled: OTEL_SDK_DISABLED=true; every provider is a no-op.
	ExporterDisabled = "disabled"
)

// Config describes the process to the telemetry backends.
type Config struct {
	// ServiceName is service.name unless OTEL_SERVICE_NAME overrides it.
	ServiceName string
	// Version is service.version.
	Version string
	// Logger, when set, receives the errors the otel SDK reports in the
	// background (failed exports, failing gauge callbacks) instead of the
	// standard library logger.
	Logger *slog.Logger
}

// Telemetry holds the providers Setup installed, for /metrics and shutdown.
type Telemetry struct {
	// Registry holds every metric served at /metrics: the otel instruments
	// through the Prometheus exporter, plus the Go runtime and process
	// collectors.
	Registry *prometheus.Registry

	exporter string
	tp       *sdktrace.TracerProvider
	mp       *sdkmetric.MeterProvider
}

// Setup installs the global TracerProvider, MeterProvider and the W3C
// TraceContext+Baggage propagator.
//
// Spans go wherever the standard OTEL_* variables say, through autoexport:
// OTEL_TRACES_EXPORTER=otlp|console|none, OTEL_EXPORTER_OTLP_ENDPOINT and
// friends. Unlike autoexport's default, an environment that names neither an
// exporter nor an OTLP endpoint exports nothing, so a developer running the
// worker bare gets no "connection refused to localhost:4318" noise.
// OTEL_SDK_DISABLED=true installs no-op providers for traces and metrics
// (the Go runtime collectors are still served).
//
// Metrics are pulled: an otel Prometheus exporter feeds Registry.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("register go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("register process collector: %w", err)
	}
	t := &Telemetry{Registry: reg}

	// The propagator is installed even when disabled so trace context still
	// passes through unchanged from the storefront to the worker's logs.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if cfg.Logger != nil {
		l := cfg.Logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			l.Warn("opentelemetry", "err", err)
		}))
	}

	if sdkDisabled() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		t.exporter = ExporterDisabled
		return t, nil
	}

	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	exp, name, err := spanExporter(ctx)
	if err != nil {
		return nil, err
	}
	t.exporter = name
	var tp trace.TracerProvider = quietProvider{}
	if exp != nil {
		t.tp = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
		tp = t.tp
	}
	// With no exporter nothing would read the spans, and building them cost
	// a tenth of the worker's CPU, so no spans are made. A no-op span passes
	// its parent's context through, so the storefront's trace id still
	// reaches the logs, and a producer that does not trace sends no
	// traceparent: a worker that does starts a sampled trace of its own
	// instead of inheriting an unsampled one.

	promExp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		if t.tp != nil {
			_ = t.tp.Shutdown(ctx)
		}
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(promExp))

	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(t.mp)
	return t, nil
}

// Exporter names where spans go: "otlp", "console", "none" or "disabled".
// The worker logs it at start so an operator can tell why Jaeger is empty.
func (t *Telemetry) Exporter() string { return t.exporter }

// Exporting reports whether spans leave the process. Instrumentation that
// costs CPU on every call (a Redis hook) is worth adding only then.
func (t *Telemetry) Exporting() bool {
	return t.exporter != ExporterNone && t.exporter != ExporterDisabled
}

// Shutdown flushes buffered spans and stops the providers. Call it before
// the process exits, or short-lived commands (enqueue) lose their spans.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.tp != nil {
		if err := t.tp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tracer provider: %w", err))
		}
	}
	if t.mp != nil {
		if err := t.mp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("meter provider: %w", err))
		}
	}
	return errors.Join(errs...)
}

// MetricsHandler serves Registry in the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.InstrumentMetricHandler(t.Registry,
		promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}

func sdkDisabled() bool {
	v, err := strconv.ParseBool(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")))
	return err == nil && v
}

// newResource puts cfg first and the environment last, so OTEL_SERVICE_NAME
// and OTEL_RESOURCE_ATTRIBUTES win. Process attributes are left out on
// purpose: process.command_args would publish a --database-url password.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName(cmp.Or(cfg.ServiceName, DefaultServiceName))}
	if cfg.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.Version))
	}
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	return res, nil
}

// spanExporter returns nil when spans should not leave the process.
func spanExporter(ctx context.Context) (sdktrace.SpanExporter, string, error) {
	name := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))
	if name == "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, ExporterNone, nil
	}
	name = cmp.Or(name, "otlp")
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("traces exporter %q (OTEL_TRACES_EXPORTER: otlp, console or none): %w", name, err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return nil, ExporterNone, nil
	}
	return exp, name, nil
}
