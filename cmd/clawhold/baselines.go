package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// baselinesCmd is being written (issue 9).
func (a *app) baselinesCmd() *cobra.Command {
	return &cobra.Command{Use: "baselines", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("baselines: not built yet") }}
}
