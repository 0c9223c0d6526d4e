package hub

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/junctionhq/junction/protocol"
)

// TestDisconnectedLabels: a close is counted under its code's label when
// the code has one (the protocol's table, 1006) and under "other" when not,
// as closeLabel names them.
func TestDisconnectedLabels(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry(), nil)
	for _, code := range []int{protocol.CloseNormal, protocol.CloseNormal, protocol.CloseAbnormal, 4108, 3999, 4999} {
		m.disconnected(code)
	}
	for _, tc := range []struct {
		label string
		want  float64
	}{
		{"1000", 2}, {"1006", 1}, {"4108", 1}, {"other", 2},
	} {
		var got dto.Metric
		if err := m.disconnects.WithLabelValues(tc.label).Write(&got); err != nil {
			t.Fatal(err)
		}
		if got.GetCounter().GetValue() != tc.want {
			t.Errorf("code %s: got %v closes, want %v", tc.label, got.GetCounter().GetValue(), tc.want)
		}
	}
}
