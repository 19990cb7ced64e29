//go:build tools

// Package tools records the one command this module builds (helm, for the chart's tests), so
// `go mod tidy` keeps its dependencies in go.sum.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
