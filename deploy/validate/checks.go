package main

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// hintValueLocation is scheduler.HintValueLocation (kept in sync by hand:
// this module does not import jetinfer; the scheduler's tests pin the JSON
// field name).
const hintValueLocation = "desiredReplicas"

// Trigger metadata keys KEDA documents for the two trigger types we use.
var triggerKeys = map[string]map[string]bool{
	"metrics-api": {"url": true, "format": true, "valueLocation": true, "targetValue": true,
		"activationTargetValue": true, "authMode": true, "unsafeSsl": true},
	"nats-jetstream": {"natsServerMonitoringEndpoint": true, "account": true, "stream": true, "consumer": true,
		"lagThreshold": true, "activationLagThreshold": true, "useHttps": true},
}

// crossCheck verifies what strict decoding cannot: that the objects fit
// together and keep jetinfer's contracts.
func crossCheck(objs []object) error {
	var (
		errs     []error
		deploys  = map[string]*appsv1.Deployment{}
		services = map[string]*corev1.Service{}
		sos      []*kedav1alpha1.ScaledObject
		pdbs     []*policyv1.PodDisruptionBudget
		monitors []*monitoringv1.ServiceMonitor
		jobs     []*batchv1.Job
	)
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	seen := map[string]bool{}
	for _, o := range objs {
		key := o.kind + "/" + o.name
		if seen[key] {
			fail("%s rendered twice", key)
		}
		seen[key] = true
		for _, msg := range validation.IsDNS1123Subdomain(o.name) {
			fail("%s: name %q: %s", o.kind, o.name, msg)
		}
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			deploys[v.Name] = v
		case *corev1.Service:
			services[v.Name] = v
		case *kedav1alpha1.ScaledObject:
			sos = append(sos, v)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, v)
		case *monitoringv1.ServiceMonitor:
			monitors = append(monitors, v)
		case *batchv1.Job:
			jobs = append(jobs, v)
		}
	}
	for _, d := range deploys {
		errs = append(errs, checkDeployment(d)...)
	}
	for _, j := range jobs {
		errs = append(errs, checkPodSpec("Job "+j.Name, &j.Spec.Template.Spec)...)
	}
	for _, s := range services {
		if !selectsAny(labels.SelectorFromSet(s.Spec.Selector), deploys) {
			fail("Service %s selects no Deployment's pods", s.Name)
		}
	}
	for _, p := range pdbs {
		sel, err := metaSelector(p.Spec.Selector)
		if err != nil || !selectsAny(sel, deploys) {
			fail("PodDisruptionBudget %s selects no Deployment's pods (%v)", p.Name, err)
		}
	}
	for _, m := range monitors {
		sel, err := metaSelector(&m.Spec.Selector)
		found := false
		for _, s := range services {
			if err == nil && sel.Matches(labels.Set(s.Labels)) {
				found = true
				for _, ep := range m.Spec.Endpoints {
					if !hasPort(s, ep.Port) {
						fail("ServiceMonitor %s: endpoint port %q not on Service %s", m.Name, ep.Port, s.Name)
					}
				}
			}
		}
		if !found {
			fail("ServiceMonitor %s selects no Service", m.Name)
		}
	}
	for _, so := range sos {
		errs = append(errs, checkScaledObject(so, deploys, services)...)
	}
	return errors.Join(errs...)
}

func checkDeployment(d *appsv1.Deployment) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Deployment %s: "+format, append([]any{d.Name}, args...)...))
	}
	sel, err := metaSelector(d.Spec.Selector)
	if err != nil {
		fail("selector: %v", err)
	} else if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		fail("selector %v does not match its pod template labels %v", sel, d.Spec.Template.Labels)
	}
	errs = append(errs, checkPodSpec("Deployment "+d.Name, &d.Spec.Template.Spec)...)
	if d.Spec.Template.Labels["app.kubernetes.io/component"] != "worker" {
		return errs
	}
	// Worker: the grace period must cover the drain timeout the worker is
	// told, and a worker must be drained before SIGTERM.
	c := d.Spec.Template.Spec.Containers[0]
	drain, ok := envValue(c, "JETINFER_DRAIN_TIMEOUT")
	if !ok {
		fail("worker without JETINFER_DRAIN_TIMEOUT")
		return errs
	}
	dt, err := time.ParseDuration(drain)
	if err != nil {
		fail("JETINFER_DRAIN_TIMEOUT %q: %v", drain, err)
		return errs
	}
	grace := time.Duration(-1)
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= dt {
		fail("terminationGracePeriodSeconds (%v) does not exceed the drain timeout %v", grace, dt)
	}
	if _, ok := envValue(c, "JETINFER_MODEL"); !ok {
		fail("worker without JETINFER_MODEL")
	}
	if _, ok := envValue(c, "JETINFER_WORKER_ID"); !ok {
		fail("worker without JETINFER_WORKER_ID (the report key)")
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.HTTPGet == nil && c.Lifecycle.PreStop.Exec == nil {
		fail("preStop hook without an action")
	}
	return errs
}

// checkPodSpec enforces the chart's security baseline and credential
// handling on every pod.
func checkPodSpec(what string, ps *corev1.PodSpec) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(what+": "+format, args...))
	}
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		fail("pod does not require runAsNonRoot")
	}
	if len(ps.Containers) == 0 {
		fail("no containers")
	}
	vols := map[string]bool{}
	for _, v := range ps.Volumes {
		vols[v.Name] = true
	}
	for _, c := range ps.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			fail("container %s: privilege escalation allowed or root filesystem writable", c.Name)
		}
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				fail("container %s mounts undefined volume %s", c.Name, m.Name)
			}
		}
		if creds, ok := envValue(c, "JETINFER_NATS_CREDS"); ok {
			mounted := false
			for _, m := range c.VolumeMounts {
				if strings.HasPrefix(creds, strings.TrimSuffix(m.MountPath, "/")+"/") {
					mounted = true
				}
			}
			if !mounted {
				fail("container %s: JETINFER_NATS_CREDS %s is not under a mounted volume", c.Name, creds)
			}
		}
		for _, e := range c.Env {
			if strings.Contains(strings.ToLower(e.Name), "password") || strings.Contains(strings.ToLower(e.Name), "token") {
				if e.Value != "" {
					fail("container %s: secret-looking %s set inline", c.Name, e.Name)
				}
			}
		}
	}
	return errs
}

func checkScaledObject(so *kedav1alpha1.ScaledObject, deploys map[string]*appsv1.Deployment, services map[string]*corev1.Service) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("ScaledObject %s: "+format, append([]any{so.Name}, args...)...))
	}
	if err := kedav1alpha1.CheckReplicaCountBoundsAreValid(so); err != nil {
		fail("%v", err)
	}
	if err := kedav1alpha1.CheckFallbackValid(so); err != nil {
		fail("%v", err)
	}
	if err := kedav1alpha1.ValidateTriggers(so.Spec.Triggers); err != nil {
		fail("%v", err)
	}
	d, ok := deploys[so.Spec.ScaleTargetRef.Name]
	if !ok {
		fail("scaleTargetRef %q is not a rendered Deployment", so.Spec.ScaleTargetRef.Name)
		return errs
	}
	if d.Spec.Replicas != nil {
		fail("Deployment %s sets replicas while KEDA owns them", d.Name)
	}
	model := d.Spec.Template.Labels["jetinfer.dev/model"]
	var hint bool
	for _, tr := range so.Spec.Triggers {
		keys, known := triggerKeys[tr.Type]
		if !known {
			fail("unexpected trigger type %q", tr.Type)
			continue
		}
		for k := range tr.Metadata {
			if !keys[k] {
				fail("trigger %s: unknown metadata key %q", tr.Type, k)
			}
		}
		if tr.MetricType != "AverageValue" {
			fail("trigger %s: metricType %q, want AverageValue (HPA replicas = value/target)", tr.Type, tr.MetricType)
		}
		switch tr.Type {
		case "metrics-api":
			hint = true
			md := tr.Metadata
			if md["valueLocation"] != hintValueLocation || md["targetValue"] != "1" || md["format"] != "json" {
				fail("metrics-api: want valueLocation %q, targetValue \"1\", format json; got %v", hintValueLocation, md)
			}
			if _, err := strconv.ParseFloat(md["activationTargetValue"], 64); err != nil {
				fail("metrics-api: activationTargetValue %q: %v", md["activationTargetValue"], err)
			}
			u, err := url.Parse(md["url"])
			if err != nil {
				fail("metrics-api url: %v", err)
				continue
			}
			if want := "/v1/models/" + model + "/hint"; u.Path != want {
				fail("metrics-api url path %q, want %q", u.Path, want)
			}
			svcName, _, _ := strings.Cut(u.Hostname(), ".")
			svc, ok := services[svcName]
			if !ok {
				fail("metrics-api url host %q is not a rendered Service", u.Hostname())
				continue
			}
			if !hasPortNumber(svc, u.Port()) {
				fail("metrics-api url port %s not exposed by Service %s", u.Port(), svc.Name)
			}
			if svc.Spec.Selector["app.kubernetes.io/component"] != "scheduler" {
				fail("metrics-api url points at Service %s, which is not the scheduler", svc.Name)
			}
		case "nats-jetstream":
			md := tr.Metadata
			if md["consumer"] != model {
				fail("nats-jetstream consumer %q, want the model %q", md["consumer"], model)
			}
			lag, err := strconv.ParseInt(md["lagThreshold"], 10, 64)
			if err != nil || lag < 1000 {
				fail("nats-jetstream lagThreshold %q must be huge: the trigger is for activation only", md["lagThreshold"])
			}
		}
	}
	if !hint {
		fail("no metrics-api trigger on the scheduler's hint")
	}
	if b := so.Spec.Advanced; b == nil || b.HorizontalPodAutoscalerConfig == nil || b.HorizontalPodAutoscalerConfig.Behavior == nil ||
		b.HorizontalPodAutoscalerConfig.Behavior.ScaleDown == nil ||
		b.HorizontalPodAutoscalerConfig.Behavior.ScaleDown.StabilizationWindowSeconds == nil ||
		*b.HorizontalPodAutoscalerConfig.Behavior.ScaleDown.StabilizationWindowSeconds != 0 {
		fail("HPA scale-down stabilization must be 0: the scheduler stabilizes (else windows add up)")
	}
	return errs
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, e.Value != "" || e.ValueFrom != nil
		}
	}
	return "", false
}

func selectsAny(sel labels.Selector, deploys map[string]*appsv1.Deployment) bool {
	if sel.Empty() {
		return false
	}
	for _, d := range deploys {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			return true
		}
	}
	return false
}

func hasPort(s *corev1.Service, name string) bool {
	for _, p := range s.Spec.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

func hasPortNumber(s *corev1.Service, port string) bool {
	for _, p := range s.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			return true
		}
	}
	return false
}

func metaSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, errors.New("no selector")
	}
	return metav1.LabelSelectorAsSelector(s)
}
