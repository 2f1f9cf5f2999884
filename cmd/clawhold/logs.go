package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// logsCmd is being written (issue 9).
func (a *app) logsCmd() *cobra.Command {
	return &cobra.Command{Use: "logs", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("logs: not built yet") }}
}
