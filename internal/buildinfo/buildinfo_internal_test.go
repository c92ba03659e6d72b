package buildinfo

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRead(t *testing.T) {
	t.Parallel()
	stamped := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/backtestd/backtestd", Version: "v0.0.0-20261129120000-abcdef123456+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "abcdef1234567890"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name    string
		release string
		bi      *debug.BuildInfo
		ok      bool
		want    Info
		wantAs  string
	}{
		{
			name: "stamped by go build", bi: stamped, ok: true,
			want:   Info{Version: "v0.0.0-20261129120000-abcdef123456+dirty", Revision: "abcdef1234567890", Modified: true},
			wantAs: "v0.0.0-20261129120000-abcdef123456+dirty (revision abcdef1234567890, modified)",
		},
		{
			name: "clean tag",
			bi: &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.modified", Value: "false"},
			}}, ok: true,
			want: Info{Version: "v1.4.0", Revision: "0123abc"}, wantAs: "v1.4.0 (revision 0123abc)",
		},
		{
			name: "release set with -ldflags -X", release: "v1.5.0", bi: stamped, ok: true,
			want:   Info{Version: "v1.5.0", Revision: "abcdef1234567890", Modified: true},
			wantAs: "v1.5.0 (revision abcdef1234567890, modified)",
		},
		{name: "nothing stamped", bi: &debug.BuildInfo{}, ok: true, want: Info{Version: Devel}, wantAs: Devel},
		{name: "no build information", ok: false, want: Info{Version: Devel}, wantAs: Devel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := read(tt.release, tt.bi, tt.ok)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.wantAs, got.String())
		})
	}
}
