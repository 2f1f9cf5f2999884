package openclawtest

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/coder/websocket"
)

// HelloAuth is the auth block of the gateway's hello-ok.
type HelloAuth struct {
	Method string   `json:"method"`
	Role   string   `json:"role"`
	Scopes []string `json:"scopes"`
}

// Handshake completes the operator connect on a freshly dialled gateway
// WebSocket (openclaw-experiments §2, as the CLI client: with trusted-proxy
// headers it needs no device identity) asking for scopes, and returns the
// hello-ok auth block. When the gateway refuses, refusal is its error
// object and err says so. The caller closes c.
func Handshake(ctx context.Context, c *websocket.Conn, scopes []string) (auth HelloAuth, refusal json.RawMessage, err error) {
	c.SetReadLimit(8 << 20) // hello-ok lists every method
	_, b, err := c.Read(ctx)
	if err != nil {
		return HelloAuth{}, nil, err
	}
	var ev struct {
		Event string `json:"event"`
	}
	if json.Unmarshal(b, &ev); ev.Event != "connect.challenge" {
		return HelloAuth{}, nil, errors.New("first frame is not connect.challenge: " + string(b))
	}
	req, _ := json.Marshal(map[string]any{"type": "req", "id": "c1", "method": "connect", "params": map[string]any{
		"minProtocol": 4, "maxProtocol": 4,
		"client": map[string]any{"id": "cli", "version": "0.0.1", "platform": "linux", "mode": "cli"},
		"role":   "operator", "scopes": scopes,
		"caps": []string{}, "commands": []string{}, "permissions": map[string]any{},
		"locale": "en-US", "userAgent": "clawhold-test/0.0.1",
	}})
	if err := c.Write(ctx, websocket.MessageText, req); err != nil {
		return HelloAuth{}, nil, err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return HelloAuth{}, nil, err
		}
		var f struct {
			Type    string          `json:"type"`
			ID      string          `json:"id"`
			OK      bool            `json:"ok"`
			Payload json.RawMessage `json:"payload"`
			Error   json.RawMessage `json:"error"`
		}
		if json.Unmarshal(b, &f); f.Type != "res" || f.ID != "c1" {
			continue // events
		}
		if !f.OK {
			return HelloAuth{}, f.Error, errors.New("connect refused: " + string(f.Error))
		}
		var hello struct {
			Type string    `json:"type"`
			Auth HelloAuth `json:"auth"`
		}
		if err := json.Unmarshal(f.Payload, &hello); err != nil || hello.Type != "hello-ok" {
			return HelloAuth{}, nil, errors.New("no hello-ok: " + string(f.Payload[:min(len(f.Payload), 400)]))
		}
		return hello.Auth, nil, nil
	}
}
