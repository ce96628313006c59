// The real node's cluster DNS: CoreDNS with only the plugins the Corefile of
// tests/controlplane/real-node.sh (rn_corefile) uses. CoreDNS's own main plugs in every
// plugin, whose cloud and tracing SDKs were most of a cold build; choosing them at compile
// time in a main like this one is how CoreDNS documents custom builds.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// The order of CoreDNS's plugin.cfg, which is the order a query passes them.
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
