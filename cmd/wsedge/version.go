package main

import (
	"runtime"
	"runtime/debug"
)

// release is the version of this source tree.
const release = "0.1.0"

func versionString() string {
	v := "wsedge " + release + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	return v
}
