package apps

import (
	"context"
	"net/http"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// Admin views for the console's Apps page (docs/apps.md, "Reference"): one
// app's installations with their users' session activity, and one
// device's recent output outcomes on this node.

const maxDeviceIDLen = 128

func (s *Service) adminViewOps() []account.Op {
	a := s.deps.Account
	return []account.Op{
		account.Define(a, account.Op{Name: "apps.installsOfApp", Scope: auth.ScopeAdmin, WS: true,
			Routes: []account.Route{{Method: "GET", Path: "/api/v1/admin/apps/{id}/installs", Status: http.StatusOK, OperationID: "listAppInstalls",
				Summary: "An app's installations in user id order: each user's grant and sessions of the app", Tag: "Apps", Result: "AppInstallDetailList",
				PathParams: appPath, Query: pageQuery}},
		}, protocol.AppInstallDetailList{}, checkAppInstalls, s.installsOfApp),
		account.Define(a, account.Op{Name: "apps.deviceOutputs", Scope: auth.ScopeAdmin, WS: true,
			Routes: []account.Route{{Method: "GET", Path: "/api/v1/admin/devices/{deviceId}/outputs", Status: http.StatusOK, OperationID: "listDeviceOutputs",
				Summary: "A device's most recent output outcomes on this node, newest first (in memory, per node)", Tag: "Apps", Result: "DeviceOutputs",
				PathParams: map[string]string{"deviceId": "deviceId"},
				Query:      []account.QueryParam{{Name: "limit", Member: "limit", Type: "integer", Desc: "1..50 (default 50)", Min: 1, Max: outcomesPerDevice}}}},
		}, protocol.DeviceOutputs{}, checkDeviceOutputs, s.deviceOutputs),
	}
}

func checkAppInstalls(p *protocol.AppInstallsParams) error {
	if err := checkID("id", p.ID); err != nil {
		return err
	}
	return checkPage(p.After, p.Limit)
}

func checkDeviceOutputs(p *protocol.DeviceOutputsParams) error {
	if p.DeviceID == "" || len(p.DeviceID) > maxDeviceIDLen {
		return protocol.FieldError("deviceId", "want 1..%d bytes", maxDeviceIDLen)
	}
	if p.Limit < 0 || p.Limit > outcomesPerDevice {
		return protocol.FieldError("limit", "want 1..%d", outcomesPerDevice)
	}
	return nil
}

func (s *Service) installsOfApp(ctx context.Context, _ *auth.Principal, p *protocol.AppInstallsParams) (any, error) {
	if _, err := s.deps.Store.App(ctx, p.ID); err != nil {
		return nil, err
	}
	ins, more, err := s.deps.Store.InstallsOfAppWithActivity(ctx, p.ID, p.After, p.Limit)
	if err != nil {
		return nil, err
	}
	out := protocol.AppInstallDetailList{AppID: p.ID, Installs: []protocol.AppInstallDetail{}}
	for _, in := range ins {
		d := protocol.AppInstallDetail{UserID: in.UserID, Scopes: in.Scopes, CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt, ActiveSessions: in.ActiveSessions}
		if d.Scopes == nil {
			d.Scopes = []string{}
		}
		if !in.LastSessionAt.IsZero() {
			t := in.LastSessionAt
			d.LastSessionAt = &t
		}
		out.Installs = append(out.Installs, d)
	}
	if more {
		out.Next = ins[len(ins)-1].UserID
	}
	return out, nil
}

func (s *Service) deviceOutputs(_ context.Context, _ *auth.Principal, p *protocol.DeviceOutputsParams) (any, error) {
	return protocol.DeviceOutputs{DeviceID: p.DeviceID, NodeID: s.deps.Hub.NodeID(), Declared: s.outs.exec(p.DeviceID) != nil,
		Outcomes: s.outs.record.list(p.DeviceID, p.Limit)}, nil
}
