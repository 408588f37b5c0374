// Package dhcp is the provisioner's DHCPv4 server: it answers only the MACs
// of inventory nodes, hands each its inventory address (authoritative mode)
// or only boot information beside a site DHCP server (proxy mode), picks the
// iPXE binary from the client's architecture, and sends iPXE clients to their
// per-node script over HTTP. Answers are deterministic: a restart changes
// nothing a node sees.
package dhcp
