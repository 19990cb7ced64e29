// Pins the cert-manager release whose CustomResourceDefinitions (deploy/crds) the lab installs,
// so that the API server validates every manifest `fireproof migrate traefik-acme` writes. Only
// the files are used: cert-manager's controller modules are not served by the Go proxy.
module fireproof.local/lab/cert-manager

go 1.26.0

require github.com/cert-manager/cert-manager v1.21.2
