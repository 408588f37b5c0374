// Package inventory loads, defaults and validates the rack inventory: the
// versioned YAML (apiVersion slipway.dev/v1alpha1, kind Inventory) that a
// sysadmin keeps in git, resolved into typed nodes with profiles and ranges
// applied. It never holds a secret value: BMC credentials are references
// (env:NAME or file:/path) resolved by the caller at the last moment.
package inventory
