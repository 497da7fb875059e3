package upstream

import (
	"log"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newGossipLogger returns a standard logger for memberlist that writes to
// l, at the level memberlist put in front of each line ("[DEBUG]",
// "[INFO]", "[WARN]", "[ERR]"): its chatter stays at debug, and its
// warnings reach the operator as warnings.
func newGossipLogger(l *zap.Logger) *log.Logger {
	return log.New(gossipLog{log: l}, "", 0)
}

// gossipLog is an io.Writer taking one memberlist log line per Write.
type gossipLog struct {
	log *zap.Logger
}

func (g gossipLog) Write(p []byte) (int, error) {
	level, text := gossipLevel(strings.TrimSpace(string(p)))
	if ce := g.log.Check(level, "gossip"); ce != nil {
		ce.Write(zap.String("detail", text))
	}
	return len(p), nil
}

// gossipLevel splits memberlist's level tag from a line. Untagged lines
// are warnings: memberlist tags everything routine.
func gossipLevel(line string) (zapcore.Level, string) {
	tags := []struct {
		tag   string
		level zapcore.Level
	}{
		{"[DEBUG]", zap.DebugLevel},
		{"[INFO]", zap.InfoLevel},
		{"[WARN]", zap.WarnLevel},
		{"[ERR]", zap.ErrorLevel},
		{"[ERROR]", zap.ErrorLevel},
	}
	for _, t := range tags {
		if rest, ok := strings.CutPrefix(line, t.tag); ok {
			rest = strings.TrimSpace(rest)
			return t.level, strings.TrimPrefix(rest, "memberlist: ")
		}
	}
	return zap.WarnLevel, line
}
