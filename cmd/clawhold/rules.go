package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// rulesCmd is being written (issue 9).
func (a *app) rulesCmd() *cobra.Command {
	return &cobra.Command{Use: "rules", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("rules: not built yet") }}
}
