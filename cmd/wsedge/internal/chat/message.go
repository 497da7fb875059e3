package chat

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Chat is one message said in the room, as published through the broker
// and as delivered to clients, byte for byte.
type Chat struct {
	Type    string `json:"type"` // "chat"
	ID      string `json:"id"`   // unique: the server instance's mark, the connection's number, Seq
	Client  string `json:"client"`
	Nick    string `json:"nick"`
	Backend string `json:"backend"` // the server the sender is connected to
	Seq     uint64 `json:"seq"`     // per connection, from 1, in the order sent
	Text    string `json:"text"`
	Time    int64  `json:"ts"` // Unix milliseconds when the sender's server took it
}

// Member is one client in the room.
type Member struct {
	ID      string `json:"id"`
	Nick    string `json:"nick"`
	Backend string `json:"backend"`
	Since   int64  `json:"since"` // Unix milliseconds when it joined its server
}

// presence is what a server tells the others about its clients, through
// the broker.
type presence struct {
	Type    string   `json:"type"` // "presence"
	Backend string   `json:"backend"`
	Addr    string   `json:"addr"`
	Count   int      `json:"count"`
	Members []Member `json:"members"` // at most maxListed of Count
}

// hello is the first message a client gets: who its server is.
type hello struct {
	Type     string `json:"type"` // "hello"
	Backend  string `json:"backend"`
	Addr     string `json:"addr"`
	Client   string `json:"client"` // the client's address as the server saw it
	ID       string `json:"id"`
	Nick     string `json:"nick"`
	Broker   string `json:"broker"`
	BrokerUp bool   `json:"broker_up"`
	PingMS   int64  `json:"ping_ms"` // the server's ping interval
}

// history carries the room's last messages to a client that just joined.
type history struct {
	Type     string            `json:"type"` // "history"
	Messages []json.RawMessage `json:"messages"`
}

// members is the room's membership as one server knows it.
type members struct {
	Type     string         `json:"type"` // "members"
	Count    int            `json:"count"`
	Backends map[string]int `json:"backends"` // members per server
	Members  []Member       `json:"members"`  // at most maxListed, longest present first
}

// brokerState tells clients that the link to the broker went down or came
// back.
type brokerState struct {
	Type   string `json:"type"` // "broker"
	Broker string `json:"broker"`
	Up     bool   `json:"up"`
}

// errorMsg tells a client that something it sent was not delivered.
type errorMsg struct {
	Type string `json:"type"` // "error"
	Text string `json:"text"`
	Seq  uint64 `json:"seq,omitempty"` // the lost message's, when one was lost
}

// maxListed bounds the member lists in presence and members messages,
// which every server sends every client that watches: a room of thousands
// costs counts, not thousands of names.
const maxListed = 50

// mustJSON encodes a value of this file's types, which cannot fail.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("chat: " + err.Error())
	}
	return b
}

// incoming is what a client sent: {"text": "..."}, or anything else taken
// as the text itself.
func incoming(p []byte) string {
	var m struct {
		Text *string `json:"text"`
	}
	if len(p) > 0 && p[0] == '{' && json.Unmarshal(p, &m) == nil && m.Text != nil {
		return *m.Text
	}
	return string(p)
}

// cleanName returns s if it is a usable id or nick of at most n runes:
// printable, no leading or trailing space; "" otherwise.
func cleanName(s string, n int) string {
	s = strings.TrimSpace(s)
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > n {
		return ""
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return ""
		}
	}
	return s
}

// cleanID returns s if it is a client id: 1 to 40 of [A-Za-z0-9_.-].
func cleanID(s string) string {
	if s == "" || len(s) > 40 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return ""
		}
	}
	return s
}
