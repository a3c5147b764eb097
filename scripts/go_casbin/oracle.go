package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/util"
)

type job struct {
	Model    string     `json:"model"`
	Policy   string     `json:"policy"`
	Requests [][]string `json:"requests"`
	Names    map[string]string `json:"names"`
	Domains  map[string]string `json:"domains"`
}

var funcs = map[string]func(string, string) bool{
	"keyMatch": util.KeyMatch, "keyMatch2": util.KeyMatch2, "keyMatch3": util.KeyMatch3,
	"keyMatch4": util.KeyMatch4, "keyMatch5": util.KeyMatch5, "regexMatch": util.RegexMatch,
	"globMatch": func(a, b string) bool { ok, _ := util.GlobMatch(a, b); return ok },
	"ipMatch": util.IPMatch,
}

type answer struct {
	Error     string   `json:"error,omitempty"`
	Decisions []string `json:"decisions"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var j job
		if err := json.Unmarshal(in.Bytes(), &j); err != nil {
			panic(err)
		}
		var a answer
		e, err := casbin.NewEnforcer(j.Model, j.Policy)
		if err != nil {
			a.Error = err.Error()
			out.Encode(a)
			continue
		}
		for g, f := range j.Names {
			e.AddNamedMatchingFunc(g, f, funcs[f])
		}
		for g, f := range j.Domains {
			e.AddNamedDomainMatchingFunc(g, f, funcs[f])
		}
		if len(j.Names)+len(j.Domains) > 0 {
			e.BuildRoleLinks()
		}
		for _, r := range j.Requests {
			args := make([]interface{}, len(r))
			for i, v := range r {
				args[i] = v
			}
			ok, err := e.Enforce(args...)
			if err != nil {
				a.Decisions = append(a.Decisions, "error: "+err.Error())
			} else {
				a.Decisions = append(a.Decisions, fmt.Sprint(ok))
			}
		}
		out.Encode(a)
	}
}
