// Package api holds the OpenAPI description of cmd/api, the storefront HTTP
// API, embedded so that the server serves the very file the repository
// validates (make test runs an OpenAPI validator on it, and
// internal/httpapi's tests compare it with what the server answers). It
// holds no code: //go:embed reaches only its own folder.
package api

import _ "embed"

// OpenAPI is openapi.yaml, OpenAPI 3.1.
//
//go:embed openapi.yaml
var OpenAPI []byte
