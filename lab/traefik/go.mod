// Pins the Traefik release the lab builds. Traefik is built as the main module from its own
// source (`go mod download`, verified against go.sum), so that its `replace` directives apply:
// fetched as a dependency, one of its replaced modules is refused by the proxy.
module fireproof.local/lab/traefik

go 1.26.0

require github.com/traefik/traefik/v3 v3.7.13
