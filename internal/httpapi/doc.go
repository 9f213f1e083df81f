// Package httpapi is the storefront HTTP API that cmd/api serves: POST
// /v1/orders, GET /v1/orders/{id} with ?wait=, GET /v1/stock/{sku}, the
// OpenAPI description, /healthz, /readyz and /metrics, behind bearer keys,
// a per-key rate limit, and timeouts that keep a slow client from holding
// the server (api/openapi.yaml describes every route and status).
//
// It is a thin layer over the public stockgate.Client (the Orders interface
// it states): it validates a request before anything is enqueued, and
// maps the client's errors to status codes. It must not decide orders,
// change stock or reach Redis and Postgres by any other way; it keeps no
// state of its own but its rate limiters, so any number of servers may run.
package httpapi
