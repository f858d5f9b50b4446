// Command screening-mcp is the KYC example's downstream MCP server: the
// tools sanctions_screen and adverse_media_search that
// examples/kyc-onboarding.yaml names, over stdio, on a small canned data
// set (no network, no clock, no randomness: the same arguments always get
// the same answer). examples/kyc-onboarding.tools.yaml runs it, so that the
// server, not the agent, screens the customer:
//
//	nano-vm-mcp run kyc-onboarding --tools examples/kyc-onboarding.tools.yaml ...
//
// It stands in for a screening provider's MCP server; nothing in it is a
// real sanctions list or a real article.
package main

import (
	"fmt"
	"os"

	"github.com/mark3labs/mcp-go/server"
)

func main() {
	if err := server.ServeStdio(newServer()); err != nil {
		fmt.Fprintln(os.Stderr, "screening-mcp:", err)
		os.Exit(1)
	}
}
