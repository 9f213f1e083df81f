// Package deploy holds the deployment configuration that is not Go:
// prometheus.yml here, and the checks (compose_test.go) that keep
// docker-compose.yml, .env.example, the Dockerfile and prometheus.yml in
// agreement with the configuration the code reads, without a Docker engine.
//
// It has no runtime code; nothing may import it.
package deploy
