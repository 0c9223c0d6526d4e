package bench

// Several --url: the nodes of a cluster sharing a broker. Connections are
// placed so that what the scenario measures crosses nodes: the fan-out's
// subscribers (and idle, rpc and connect connections, and the mixed
// scenario's pingers) spread over every node round-robin while the publisher
// (WebSocket or REST) is on the first node; relayed calls go from callers
// on the first node to machines on the others, so that every call is
// relayed from one node to another.

// nodeCount is the number of servers of --url when more than one, else 0
// (the result line's nodes field).
func (c *Config) nodeCount() int {
	if len(c.nodes) > 1 {
		return len(c.nodes)
	}
	return 0
}

// nodeOf returns which node (index into c.nodes) connection i of this
// process dials, for c.Scenario.
func (c *Config) nodeOf() func(i int) int {
	n := len(c.nodes)
	if n <= 1 {
		return nil
	}
	// machineNode places machine j on a node other than the first.
	machineNode := func(j int) int { return 1 + j%(n-1) }
	switch c.Scenario {
	case "relay":
		machines := c.Machines
		return func(i int) int {
			if i < machines {
				return machineNode(i)
			}
			return 0
		}
	case "fanout", "mixed":
		l := c.layout()
		return func(i int) int {
			switch l.kind(i) {
			case kindSubscriber, kindPinger:
				return i % n
			case kindMachine:
				return machineNode(i - l.relayBase())
			}
			return 0 // the publisher, the callers
		}
	}
	return func(i int) int { return i % n }
}
