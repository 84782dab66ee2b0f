package analysis

import (
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// MaxConditionCost bounds a successCondition's or failureCondition's cost, as CEL
// estimates it at admission and counts it at evaluation. A condition over one double
// costs a few units per operator; the bound only stops expressions built to be slow
// (long chains of list macros), which would otherwise run in every reconcile.
const MaxConditionCost = 1000

// conditionEnv is the CEL environment of a check's conditions: result is the measured
// value. Cross-type comparisons let "result < 1" mean what it reads as.
var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("result", cel.DoubleType),
		cel.CrossTypeNumericComparisons(true),
	)
})

// comparisonEnv is the environment of a check that compares with the primary
// (compareWithPrimary): canary and primary are the two values, result is canary's.
var comparisonEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("result", cel.DoubleType),
		cel.Variable("canary", cel.DoubleType),
		cel.Variable("primary", cel.DoubleType),
		cel.CrossTypeNumericComparisons(true),
	)
})

// noSizes is the cost estimator for an environment with no variables of unknown size.
type noSizes struct{}

func (noSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }
func (noSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// CompileCondition compiles a condition: it must be CEL over result returning a bool (and
// over canary and primary when compare is set: a check with compareWithPrimary), whose
// worst cost is at most MaxConditionCost. The admission webhook calls it, and the runner,
// so that what is admitted is what runs.
func CompileCondition(expr string, compare bool) (cel.Program, error) {
	envOf, over := conditionEnv, "result (a double)"
	if compare {
		envOf, over = comparisonEnv, "result, canary and primary (doubles)"
	}
	env, err := envOf()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		hint := ""
		if msg := iss.Err().Error(); strings.Contains(msg, "no matching overload") && strings.Contains(msg, "int") {
			hint = " (arithmetic needs doubles: write 10.0, not 10)"
		}
		return nil, fmt.Errorf("not a valid CEL expression over %s%s: %w", over, hint, iss.Err())
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, fmt.Errorf("must return a bool, not %s", ast.OutputType())
	}
	est, err := env.EstimateCost(ast, noSizes{})
	if err != nil {
		return nil, fmt.Errorf("estimating its cost: %w", err)
	}
	if est.Max > MaxConditionCost {
		return nil, fmt.Errorf("its estimated cost %d is more than the limit %d", est.Max, MaxConditionCost)
	}
	return env.Program(ast, cel.CostLimit(MaxConditionCost))
}

// programs caches compiled conditions by expression: a Canary's conditions run at every
// step, and a cel.Program is safe for concurrent use. Bounded: past maxPrograms it starts
// over, which costs a recompilation and nothing else.
var programs = struct {
	sync.Mutex
	m map[programKey]cel.Program
}{m: map[programKey]cel.Program{}}

type programKey struct {
	expr    string
	compare bool
}

const maxPrograms = 1024

func compiled(expr string, compare bool) (cel.Program, error) {
	key := programKey{expr, compare}
	programs.Lock()
	p, ok := programs.m[key]
	programs.Unlock()
	if ok {
		return p, nil
	}
	p, err := CompileCondition(expr, compare)
	if err != nil {
		return nil, err
	}
	programs.Lock()
	if len(programs.m) >= maxPrograms {
		programs.m = map[programKey]cel.Program{}
	}
	programs.m[key] = p
	programs.Unlock()
	return p, nil
}

// measured is what a check's conditions see: the canary's value, and with
// compareWithPrimary the primary's.
type measured struct {
	canary, primary float64
	compare         bool
}

func (v measured) String() string {
	if v.compare {
		return fmt.Sprintf("canary %s (primary %s)", preciseValue(v.canary), preciseValue(v.primary))
	}
	return preciseValue(v.canary)
}

func evalCondition(field, expr string, v measured) (bool, error) {
	p, err := compiled(expr, v.compare)
	if err != nil {
		return false, fmt.Errorf("%s: %w", field, err)
	}
	vars := map[string]any{"result": v.canary}
	if v.compare {
		vars["canary"], vars["primary"] = v.canary, v.primary
	}
	out, _, err := p.Eval(vars)
	if err != nil {
		return false, fmt.Errorf("%s %q: %w", field, expr, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%s %q returned %v, not a bool", field, expr, out)
	}
	return b, nil
}

// judgeConditions decides a measured value by the check's CEL conditions, as Argo Rollouts
// does: failureCondition true fails; else successCondition true passes; with only one of
// them, its being false decides the other way; with both, neither true is Inconclusive.
func judgeConditions(v measured, m *meshv1.CanaryMetric) (meshv1.CheckOutcome, string) {
	for _, x := range []float64{v.canary, v.primary} {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return judge(x, meshv1.ThresholdRange{})
		}
	}
	failure, success := false, false
	if m.FailureCondition != "" {
		var err error
		if failure, err = evalCondition("failureCondition", m.FailureCondition, v); err != nil {
			return meshv1.OutcomeBadQuery, err.Error()
		}
		if failure {
			return meshv1.OutcomeFail, fmt.Sprintf("%s meets the failureCondition %s", v, m.FailureCondition)
		}
	}
	if m.SuccessCondition != "" {
		var err error
		if success, err = evalCondition("successCondition", m.SuccessCondition, v); err != nil {
			return meshv1.OutcomeBadQuery, err.Error()
		}
	}
	switch {
	case success:
		return meshv1.OutcomePass, ""
	case m.SuccessCondition == "":
		return meshv1.OutcomePass, ""
	case m.FailureCondition == "":
		return meshv1.OutcomeFail, fmt.Sprintf("%s does not meet the successCondition %s", v, m.SuccessCondition)
	}
	return meshv1.OutcomeInconclusive, fmt.Sprintf("%s meets neither the successCondition %s nor the failureCondition %s",
		v, m.SuccessCondition, m.FailureCondition)
}

// conditionText is what status shows as a check's threshold.
func conditionText(m *meshv1.CanaryMetric) string {
	switch {
	case m.SuccessCondition != "" && m.FailureCondition != "":
		return "success: " + m.SuccessCondition + "; failure: " + m.FailureCondition
	case m.SuccessCondition != "":
		return m.SuccessCondition
	case m.FailureCondition != "":
		return "not (" + m.FailureCondition + ")"
	}
	return ""
}
