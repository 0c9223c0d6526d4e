package cluster

// Presence, the device directory, node messages and idempotency records.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/junctionhq/junction/internal/hub"
)

// AddPresence implements hub.Presence. The entry expires ttl after its
// last AddPresence by Redis's clock; the hub refreshes its node's entries
// (every presenceTTL/3), so a killed node's entries disappear within its
// ttl.
func (b *Broker) AddPresence(ctx context.Context, topic, clientID string, info hub.ClientInfo, ttl time.Duration) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	raw, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("cluster: presence info: %w", err)
	}
	// A ttl under a millisecond expires at once (Redis counts in ms).
	ttlMs := ttl.Milliseconds()
	if err := scriptPresenceAdd.Run(ctx, b.shardOf(topic).client,
		[]string{b.presKey(topic), b.presExpKey(topic)}, clientID, raw, ttlMs).Err(); err != nil {
		return redisErr("cluster: add presence %q: %w", topic, err)
	}
	return nil
}

// RemovePresence implements hub.Presence.
func (b *Broker) RemovePresence(ctx context.Context, topic, clientID string) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if err := scriptPresenceRemove.Run(ctx, b.shardOf(topic).client,
		[]string{b.presKey(topic), b.presExpKey(topic)}, clientID).Err(); err != nil {
		return redisErr("cluster: remove presence %q: %w", topic, err)
	}
	return nil
}

// Presence implements hub.Presence.
func (b *Broker) Presence(ctx context.Context, topic string) (map[string]hub.ClientInfo, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	res, err := scriptPresence.Run(ctx, b.shardOf(topic).client,
		[]string{b.presKey(topic), b.presExpKey(topic)}).StringSlice()
	if err != nil {
		return nil, redisErr("cluster: presence %q: %w", topic, err)
	}
	out := make(map[string]hub.ClientInfo, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		var info hub.ClientInfo
		if err := json.Unmarshal([]byte(res[i+1]), &info); err != nil {
			return nil, fmt.Errorf("cluster: presence %q: entry %q: %w", topic, res[i], err)
		}
		out[res[i]] = info
	}
	return out, nil
}

// Receive implements hub.Directory: it subscribes to this node's channel.
func (b *Broker) Receive(ctx context.Context, h hub.NodeHandler) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if !b.nodes.CompareAndSwap(nil, &nodeHandlerBox{h}) {
		return errors.New("cluster: Receive called twice")
	}
	name := "node:" + b.cfg.NodeID
	c := b.connOf(name)
	if !c.runs {
		return errors.New("cluster: Receive before Start")
	}
	return c.subscribe(ctx, &sub{channel: b.nodeChannel(b.cfg.NodeID), node: true, ready: make(chan struct{})})
}

// ClaimDevice implements hub.Directory: a claim recording the node, this
// node's boot id and a new generation.
func (b *Broker) ClaimDevice(ctx context.Context, deviceID, nodeID string, ttl time.Duration) (uint64, string, error) {
	if err := b.checkOpen(); err != nil {
		return 0, "", err
	}
	res, err := scriptDeviceClaim.Run(ctx, b.shardOf("device:"+deviceID).client,
		[]string{b.deviceKey(deviceID), b.deviceGenKey(deviceID)}, nodeID, b.bootOf(nodeID), ms(ttl)).Slice()
	if err != nil || len(res) != 2 {
		return 0, "", redisErr("cluster: claim device: %v %w", res, err)
	}
	gen, _ := res[0].(int64)
	prev, _ := res[1].(string)
	b.routes.forgetDevice(deviceID)
	return uint64(gen), prev, nil
}

// RefreshDevice implements hub.Directory.
func (b *Broker) RefreshDevice(ctx context.Context, deviceID, nodeID string, gen uint64, ttl time.Duration) (bool, error) {
	if err := b.checkOpen(); err != nil {
		return false, err
	}
	n, err := scriptDeviceRefresh.Run(ctx, b.shardOf("device:"+deviceID).client,
		[]string{b.deviceKey(deviceID), b.deviceGenKey(deviceID)}, nodeID, b.bootOf(nodeID), gen, ms(ttl)).Int()
	if err != nil {
		return false, redisErr("cluster: refresh device claim: %w", err)
	}
	return n == 1, nil
}

func (b *Broker) bootOf(nodeID string) string {
	if nodeID == b.cfg.NodeID {
		return b.cfg.BootID
	}
	return ""
}

// ClearDevice implements hub.Directory.
func (b *Broker) ClearDevice(ctx context.Context, deviceID, nodeID string, gen uint64) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if err := scriptDeviceClear.Run(ctx, b.shardOf("device:"+deviceID).client,
		[]string{b.deviceKey(deviceID)}, nodeID, gen).Err(); err != nil {
		return redisErr("cluster: clear device: %w", err)
	}
	b.routes.forgetDevice(deviceID)
	return nil
}

// DeviceNode implements hub.Directory: the claim's node, when that node's
// lease is live and names the claim's boot id (a node that died, or
// restarted since, holds none of its old claims).
func (b *Broker) DeviceNode(ctx context.Context, deviceID string) (string, bool, error) {
	if err := b.checkOpen(); err != nil {
		return "", false, err
	}
	c, ok, err := b.lookupClaim(ctx, deviceID)
	if err != nil || !ok {
		return "", false, err
	}
	if c.Node == b.cfg.NodeID {
		return c.Node, c.BootID == b.cfg.BootID, nil
	}
	boot, alive, err := b.nodeBoot(ctx, c.Node)
	if err != nil {
		return "", false, err
	}
	if !alive || (c.BootID != "" && boot != c.BootID) {
		return "", false, nil
	}
	return c.Node, true, nil
}

// DeviceClaim is a device's record in the directory.
type DeviceClaim struct {
	Node       string
	BootID     string
	Generation int64
}

// DeviceClaim returns deviceID's claim, or ok false.
func (b *Broker) DeviceClaim(ctx context.Context, deviceID string) (DeviceClaim, bool, error) {
	vals, err := b.shardOf("device:"+deviceID).client.HMGet(ctx, b.deviceKey(deviceID), "n", "b", "g").Result()
	if err != nil {
		return DeviceClaim{}, false, redisErr("cluster: device claim: %w", err)
	}
	node, _ := vals[0].(string)
	if node == "" {
		return DeviceClaim{}, false, nil
	}
	boot, _ := vals[1].(string)
	gen, _ := vals[2].(string)
	g, _ := strconv.ParseInt(gen, 10, 64)
	return DeviceClaim{Node: node, BootID: boot, Generation: g}, true, nil
}

// Errors of the idempotency records.
var (
	errIdemNotFound = errors.New("idempotency record not found")
	errIdemFinished = errors.New("idempotency record already finished")
)

const maxIdemBytes = 256

func checkIdem(principal, key string) error {
	if principal == "" || key == "" || len(principal) > maxIdemBytes || len(key) > maxIdemBytes {
		return errors.New("idempotency principal and key must be 1..256 bytes")
	}
	return nil
}

func (b *Broker) idemClient(principal, key string) *redis.Client {
	return b.shardOf("idem:" + principal + "\x00" + key).client
}

// IdemBegin implements hub.IdemRecords: one script claims or reads.
func (b *Broker) IdemBegin(ctx context.Context, principal, key string, ttl time.Duration) (bool, bool, []byte, time.Time, error) {
	if err := checkIdem(principal, key); err != nil {
		return false, false, nil, time.Time{}, err
	}
	if err := b.checkOpen(); err != nil {
		return false, false, nil, time.Time{}, err
	}
	res, err := scriptIdemBegin.Run(ctx, b.idemClient(principal, key),
		[]string{b.idemKey(principal, key)}, b.now().UnixMilli(), ms(ttl)).Slice()
	if err != nil || len(res) != 4 {
		return false, false, nil, time.Time{}, redisErr("cluster: idempotency begin: %v %w", res, err)
	}
	fresh, _ := res[0].(int64)
	done, _ := res[1].(string)
	body, _ := res[2].(string)
	startedStr, _ := res[3].(string)
	started, _ := strconv.ParseInt(startedStr, 10, 64)
	var bodyOut []byte
	if done == "1" {
		bodyOut = []byte(body)
	}
	return fresh == 1, done == "1", bodyOut, time.UnixMilli(started), nil
}

// IdemFinish implements hub.IdemRecords.
func (b *Broker) IdemFinish(ctx context.Context, principal, key string, body []byte) error {
	return b.idemEnd(ctx, scriptIdemFinish, principal, key, body)
}

// IdemAbort implements hub.IdemRecords.
func (b *Broker) IdemAbort(ctx context.Context, principal, key string) error {
	return b.idemEnd(ctx, scriptIdemAbort, principal, key, nil)
}

func (b *Broker) idemEnd(ctx context.Context, s *redis.Script, principal, key string, body []byte) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	n, err := s.Run(ctx, b.idemClient(principal, key), []string{b.idemKey(principal, key)}, body).Int()
	switch {
	case err != nil:
		return redisErr("cluster: idempotency record: %w", err)
	case n == 0:
		return errIdemNotFound
	case n < 0:
		return errIdemFinished
	}
	return nil
}

// IdemLookup implements hub.IdemRecords.
func (b *Broker) IdemLookup(ctx context.Context, principal, key string) (bool, bool, []byte, time.Time, error) {
	if err := b.checkOpen(); err != nil {
		return false, false, nil, time.Time{}, err
	}
	vals, err := b.idemClient(principal, key).HMGet(ctx, b.idemKey(principal, key), "s", "d", "b").Result()
	if err != nil {
		return false, false, nil, time.Time{}, redisErr("cluster: idempotency lookup: %w", err)
	}
	startedStr, _ := vals[0].(string)
	if startedStr == "" {
		return false, false, nil, time.Time{}, nil
	}
	started, _ := strconv.ParseInt(startedStr, 10, 64)
	done, _ := vals[1].(string)
	var body []byte
	if done == "1" {
		b, _ := vals[2].(string)
		body = []byte(b)
	}
	return true, done == "1", body, time.UnixMilli(started), nil
}
