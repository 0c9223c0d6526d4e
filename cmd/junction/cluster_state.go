package main

import (
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/cluster"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/web"
)

// brokerReady is /readyz's "broker" check: each Redis shard and this
// node's lease, reported one by one.
func brokerReady(rb *cluster.Broker) web.ReadyCheck {
	c := web.ReadyCheck{Name: "broker", Check: rb.Ping}
	for _, d := range rb.Dependencies() {
		c.Parts = append(c.Parts, web.ReadyPart{Name: d.Name, Addr: d.Addr, Check: d.Check})
	}
	return c
}

// The Redis broker shares the login nonces (structurally: cluster does not
// import auth).
var _ auth.SharedNonces = (*cluster.Broker)(nil)

// The Redis broker shares the per-user connection counts.
var _ hub.UserConns = (*cluster.Broker)(nil)

// The Redis broker shares the per-user REST rate.
var _ web.SharedRates = (*cluster.Broker)(nil)
