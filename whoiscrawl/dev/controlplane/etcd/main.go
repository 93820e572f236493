// etcd v3.7.3 for whoiscrawl's test control plane (mirrors the server module's own main package,
// which `go install ...@version` refuses to build because its go.mod carries replace directives).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
