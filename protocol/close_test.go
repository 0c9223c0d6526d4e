package protocol

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestCloseCodeTableMatchesDocs checks docs/PROTOCOL.md §6 against the Go
// table: the same codes, each row's meaning starting with the code's
// Reason and its advice starting with the Reconnect's words.
func TestCloseCodeTableMatchesDocs(t *testing.T) {
	raw, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatalf("read the protocol reference: %v", err)
	}
	_, section, ok := strings.Cut(string(raw), "## 6. Close codes")
	if !ok {
		t.Fatalf("docs/PROTOCOL.md has no section \"## 6. Close codes\"")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[int][]string{}
	var order []int
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 3 {
			continue
		}
		code, err := strconv.Atoi(strings.TrimSpace(cells[0]))
		if err != nil {
			continue // the header and its rule
		}
		if _, dup := rows[code]; dup {
			t.Errorf("docs: close code %d listed twice", code)
		}
		rows[code] = []string{strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])}
		order = append(order, code)
	}
	var want []int
	for _, d := range Disconnects() {
		want = append(want, d.Code)
		row, ok := rows[d.Code]
		if !ok {
			t.Errorf("docs: close code %d (%s) missing from the table", d.Code, d.Reason)
			continue
		}
		if !strings.HasPrefix(strings.ToLower(row[0]), d.Reason) {
			t.Errorf("docs: close code %d: meaning %q, want it to start with the reason %q", d.Code, row[0], d.Reason)
		}
		if !strings.HasPrefix(row[1], d.Reconnect.String()) {
			t.Errorf("docs: close code %d: reconnect %q, want it to start with %q", d.Code, row[1], d.Reconnect.String())
		}
	}
	if got, w := joinInts(order), joinInts(want); got != w {
		t.Errorf("docs: close codes %s, want %s (in code order)", got, w)
	}
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " ")
}

func TestDisconnectFor(t *testing.T) {
	tests := []struct {
		name      string
		code      int
		known     bool
		reason    string
		reconnect Reconnect
	}{
		{name: "restart", code: 1012, known: true, reason: "server restart", reconnect: ReconnectSoon},
		{name: "slow consumer", code: 4108, known: true, reason: "slow consumer", reconnect: ReconnectResume},
		{name: "token expired", code: 4001, known: true, reason: "token expired", reconnect: ReconnectNewToken},
		{name: "unknown terminal", code: 4050, reconnect: ReconnectNo},
		{name: "unknown advised", code: 4150, reconnect: ReconnectBackoff},
		{name: "abnormal", code: CloseAbnormal, reconnect: ReconnectBackoff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := DisconnectFor(tt.code)
			if ok != tt.known || d.Code != tt.code || d.Reason != tt.reason || d.Reconnect != tt.reconnect {
				t.Errorf("DisconnectFor(%d) = %+v, %v; want {%d %q %v}, %v", tt.code, d, ok, tt.code, tt.reason, tt.reconnect, tt.known)
			}
		})
	}
	for i, d := range Disconnects() {
		if i > 0 && Disconnects()[i-1].Code >= d.Code {
			t.Errorf("Disconnects not in code order at %d", d.Code)
		}
	}
}
