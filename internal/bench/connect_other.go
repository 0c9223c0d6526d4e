//go:build !linux

package bench

// rawConnector is Linux's blocking-socket connect path; elsewhere the
// portable one is used.
type rawConnector struct{}

func (r *benchRun) newRawConnector(int) (*rawConnector, error) { return nil, nil }
func (r *benchRun) connectRaw(*rawConnector) error             { return nil }
