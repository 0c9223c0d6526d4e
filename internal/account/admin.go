package account

import (
	"context"
	"net/http"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// The admin operations on accounts and devices (REST only, scope admin):
// list every account, list one account's devices, revoke one of them. They
// are what the web console's "Accounts and devices" page calls; an admin
// acts on any account, so their errors are mapped here (mapErr would speak
// of the admin's own account).

func checkAdminAccount(p *protocol.AdminAccountParams) error {
	if p.AccountID != "" {
		if err := checkID("accountId", p.AccountID); err != nil {
			return err
		}
	}
	if len(p.Cursor) > 256 {
		return protocol.FieldError("cursor", "over 256 bytes")
	}
	return nil
}

func checkAdminDevice(p *protocol.AdminDeviceParams) error {
	if err := checkID("accountId", p.AccountID); err != nil {
		return err
	}
	return checkID("id", p.ID)
}

func (s *Service) adminOps() []Op {
	return []Op{
		define(s, Op{Name: "admin.accounts", Scope: auth.ScopeAdmin,
			Routes: []Route{{Method: "GET", Path: "/api/v1/admin/accounts", Status: http.StatusOK, OperationID: "adminListAccounts",
				Summary: "Every account, newest first, one page at a time", Tag: "Admin", Result: "AdminAccountList", Query: cursorQuery}},
		}, protocol.AdminAccountList{}, checkAdminAccount, s.adminAccounts),
		define(s, Op{Name: "admin.devices", Scope: auth.ScopeAdmin,
			Routes: []Route{{Method: "GET", Path: "/api/v1/admin/accounts/{accountId}/devices", Status: http.StatusOK, OperationID: "adminListDevices",
				Summary: "One account's devices, revoked ones included", Tag: "Admin", Result: "DeviceList",
				PathParams: map[string]string{"accountId": "accountId"}}},
		}, protocol.DeviceList{}, checkAdminAccount, s.adminDevices),
		define(s, Op{Name: "admin.device.revoke", Scope: auth.ScopeAdmin,
			Routes: []Route{{Method: "DELETE", Path: "/api/v1/admin/accounts/{accountId}/devices/{id}", Status: http.StatusOK, OperationID: "adminRevokeDevice",
				Summary: "Revoke a device of any account: its refresh tokens are revoked, its connection closed with 4003", Tag: "Admin", Result: "Device",
				PathParams: map[string]string{"accountId": "accountId", "id": "id"}}},
		}, protocol.Device{}, checkAdminDevice, s.adminRevokeDevice),
	}
}

func (s *Service) adminAccounts(ctx context.Context, _ *auth.Principal, p *protocol.AdminAccountParams) (any, error) {
	as, next, err := s.deps.Store.Accounts(ctx, store.Page{Cursor: p.Cursor, Limit: p.Limit})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	out := protocol.AdminAccountList{Items: make([]protocol.AdminAccount, 0, len(as)), NextCursor: next}
	for _, a := range as {
		out.Items = append(out.Items, protocol.AdminAccount{ID: a.ID, PublicKey: a.PublicKey, CreatedAt: a.CreatedAt})
	}
	return out, nil
}

func (s *Service) adminDevices(ctx context.Context, _ *auth.Principal, p *protocol.AdminAccountParams) (any, error) {
	if _, err := s.deps.Store.Account(ctx, p.AccountID); err != nil {
		return nil, mapStoreErr(err)
	}
	ds, err := s.deps.Store.Devices(ctx, p.AccountID)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return protocol.DeviceList{Items: nonNilSlice(wireAll(ds, wireDevice))}, nil
}

// adminRevokeDevice is revokeDevice for any account: the device and its
// refresh tokens are revoked in one transaction, its live connection is
// closed with 4003 (on every node) and the account's other devices see device.revoked.
func (s *Service) adminRevokeDevice(ctx context.Context, pr *auth.Principal, p *protocol.AdminDeviceParams) (any, error) {
	d, ups, err := s.deps.Store.RevokeDevice(ctx, p.AccountID, p.ID)
	if err != nil {
		return nil, mapStoreErr(err)
	}
	s.closeDevice(ctx, p.AccountID, d.ID)
	s.publishUpdates(ctx, p.AccountID, ups)
	s.log.Warn("device revoked by an admin", "user", p.AccountID, "device", d.ID, "by_user", pr.UserID, "by_device", pr.DeviceID)
	return wireDevice(d), nil
}
