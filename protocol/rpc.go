package protocol

import "encoding/json"

// Events of the RPC relay (docs/rpc.md).
const (
	// EventRPCProgress carries an RPCProgress, from a target to the gateway
	// and from the gateway to the caller.
	EventRPCProgress = "rpc.progress"
	// EventRPCCancel tells a target to stop a relayed call; data is an RPCCancel.
	EventRPCCancel = "rpc.cancel"
)

// Machine status values of MachineStatus.Status.
const (
	MachineOnline  = "online"
	MachineOffline = "offline"
)

// RPCRegisterParams are the params of rpc.register and rpc.unregister.
type RPCRegisterParams struct {
	Methods []string `json:"methods"`
}

// RPCRegisterResult is the result of rpc.register and rpc.unregister: every
// method the connection serves now.
type RPCRegisterResult struct {
	Methods []string `json:"methods" schema:"nonnull"`
}

// RPCTarget names the device a call or a listing is for.
type RPCTarget struct {
	DeviceID string `json:"deviceId"`
}

// RPCCallParams are the params of rpc.call. Params are the params of the
// target's method (an object); TimeoutMs 0 selects the server's default.
type RPCCallParams struct {
	Target    *RPCTarget      `json:"target"`
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params,omitempty" schema:"object"`
	TimeoutMs int64           `json:"timeoutMs,omitempty" schema:"min=0"`
}

// RPCListParams are the params of rpc.list.
type RPCListParams struct {
	Target *RPCTarget `json:"target"`
}

// RPCListResult is the result of rpc.list.
type RPCListResult struct {
	DeviceID string   `json:"deviceId"`
	Methods  []string `json:"methods" schema:"nonnull"`
}

// RPCCancelParams are the params of rpc.cancel: the id of the caller's
// rpc.call request.
type RPCCancelParams struct {
	ID string `json:"id"`
}

// RPCCancelResult is the result of rpc.cancel.
type RPCCancelResult struct {
	Cancelled bool `json:"cancelled"`
}

// RPCProgress is the data of an rpc.progress event: from a target, ID is the
// relayed request id; towards a caller, it is the caller's rpc.call id.
type RPCProgress struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data,omitempty"`
}

// RPCCancel is the data of the rpc.cancel event sent to a target.
type RPCCancel struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// MachinePublication is the data of the channel.message published on the
// owner's user:{userId} channel when a machine starts serving (its first
// rpc.register on a connection) or its serving connection closes.
type MachinePublication struct {
	Machine *MachineStatus `json:"machine"`
}

// MachineStatus says that a serving device went online or offline.
type MachineStatus struct {
	Status   string `json:"status" schema:"enum=online|offline"`
	UserID   string `json:"userId"`
	DeviceID string `json:"deviceId"`
	Kind     string `json:"kind,omitempty"`
	NodeID   string `json:"nodeId"`
}
