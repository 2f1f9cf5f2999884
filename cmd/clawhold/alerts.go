package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// alertsCmd is being written (issue 9).
func (a *app) alertsCmd() *cobra.Command {
	return &cobra.Command{Use: "alerts", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("alerts: not built yet") }}
}
