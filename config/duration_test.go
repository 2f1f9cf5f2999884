package config

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "90d", want: 90 * Day},
		{in: "80d", want: 80 * Day},
		{in: "0d", want: 0},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "2160h", want: 90 * Day},
		{in: "90m", want: 90 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "-1d", want: -Day},
		{in: "-1h", want: -time.Hour},
		{in: "", wantErr: true},
		{in: "d", wantErr: true},
		{in: "1.5d", wantErr: true},
		{in: "90", wantErr: true},
		{in: "90days", wantErr: true},
		{in: "1d-2h", wantErr: true},
		{in: "1d1d", wantErr: true},
		{in: "99999999999d", wantErr: true},
		{in: "106752d", wantErr: true},
		{in: "106751d24h", wantErr: true},
		{in: "106751d23h", want: 106751*Day + 23*time.Hour},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseDuration(%q) = %v, want error", tt.in, got)
			}
			continue
		}
		if err != nil || time.Duration(got) != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, time.Duration(got), err, tt.want)
		}
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{90 * Day, "90d"},
		{Day, "1d"},
		{-2 * Day, "-2d"},
		{36 * time.Hour, "36h0m0s"},
		{time.Hour, "1h0m0s"},
		{0, "0s"},
	}
	for _, tt := range tests {
		if got := Duration(tt.d).String(); got != tt.want {
			t.Errorf("Duration(%v).String() = %q, want %q", tt.d, got, tt.want)
		}
		back, err := ParseDuration(Duration(tt.d).String())
		if err != nil || time.Duration(back) != tt.d {
			t.Errorf("round trip of %v: %v, %v", tt.d, back, err)
		}
	}
}
