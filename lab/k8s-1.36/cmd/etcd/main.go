// Command etcd is upstream etcd's server entry point, built from the pinned server module
// so the lab runs the same etcd that Kubernetes is tested against.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
