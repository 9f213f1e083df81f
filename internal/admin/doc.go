// Package admin owns the worker's operator HTTP server: /healthz, /readyz,
// /metrics and the asynqmon UI at /monitoring/, behind basic auth when it is
// configured, and never open to the network without it.
//
// It must not decide what "ready" means or which metrics exist: the caller
// passes the readiness check and the /metrics handler in Config. It opens no
// Redis or Postgres connections of its own except asynqmon's.
package admin
