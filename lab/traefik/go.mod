// Pins the Traefik release the lab builds. Traefik is built as the main module from its own
// source (`go mod download`, verified against go.sum), so that its `replace` directives apply:
// fetched as a dependency, github.com/abbot/go-http-auth is refused by the proxy. v3.6.12, not
// v3.7.x: v3.7 replaces it with a containous/go-http-auth version the proxy refuses (403), and
// v3.7.13 also needs lego DNS providers' SDKs it refuses (sacloud, ucloud, yandex-cloud).
module fireproof.local/lab/traefik

go 1.26.0

require github.com/traefik/traefik/v3 v3.6.12
