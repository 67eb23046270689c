using System.Reflection;
using System.Runtime.ExceptionServices;

/// <summary>
/// Runs the NUnit fixtures of a test assembly by reflection, for a machine that has the .NET runtime but no SDK
/// (no `dotnet test`): the GPU machine. Supports what the parity suite uses — [OneTimeSetUp], [OneTimeTearDown],
/// [SetUp], [TearDown], [Test] and [TestCase(args)]; Assert.Ignore counts as skipped, any other exception as a
/// failure. Prints one line per test and NUnit-style totals; returns the number of failures.
/// </summary>
internal static class MiniTestRunner
{
    public static int Run(string assemblyPath, string fixtureFilter, TextWriter output)
    {
        var assembly = Assembly.LoadFrom(Path.GetFullPath(assemblyPath));
        int passed = 0, failed = 0, skipped = 0;
        foreach (var type in assembly.GetTypes().Where(t => !t.IsAbstract && t.IsClass && t.Name.Contains(fixtureFilter, StringComparison.Ordinal)))
        {
            var methods = type.GetMethods(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);
            MethodInfo[] With(string attribute) => methods.Where(m => m.GetCustomAttributes(true).Any(a => a.GetType().Name == attribute)).ToArray();
            object fixture = Activator.CreateInstance(type)!;
            string? fixtureSkip = null;
            try { foreach (var m in With("OneTimeSetUpAttribute")) Invoke(m, fixture, []); }
            catch (Exception e) when (IsIgnore(e)) { fixtureSkip = Unwrap(e).Message; }
            catch (Exception e) { output.WriteLine($"  Failed {type.Name} [OneTimeSetUp]: {Unwrap(e).Message}"); failed++; continue; }
            foreach (var (method, args, label) in Cases(methods))
            {
                string name = $"{type.Name}.{method.Name}{label}";
                if (fixtureSkip is not null) { skipped++; output.WriteLine($"  Skipped {name}: {fixtureSkip}"); continue; }
                try
                {
                    foreach (var m in With("SetUpAttribute")) Invoke(m, fixture, []);
                    Invoke(method, fixture, args);
                    foreach (var m in With("TearDownAttribute")) Invoke(m, fixture, []);
                    passed++;
                    output.WriteLine($"  Passed {name}");
                }
                catch (Exception e) when (IsIgnore(e)) { skipped++; output.WriteLine($"  Skipped {name}: {Unwrap(e).Message}"); }
                catch (Exception e) { failed++; output.WriteLine($"  Failed {name}: {Unwrap(e).GetType().Name}: {Unwrap(e).Message}"); }
            }
            try { foreach (var m in With("OneTimeTearDownAttribute")) Invoke(m, fixture, []); }
            catch (Exception e) { output.WriteLine($"  (OneTimeTearDown of {type.Name} threw {Unwrap(e).Message})"); }
        }
        output.WriteLine($"{(failed == 0 ? "Passed!" : "Failed!")}  - Failed: {failed}, Passed: {passed}, Skipped: {skipped}, Total: {passed + failed + skipped} - {Path.GetFileName(assemblyPath)} (mini runner, fixtures *{fixtureFilter}*)");
        return failed;
    }

    private static IEnumerable<(MethodInfo, object?[], string)> Cases(MethodInfo[] methods)
    {
        foreach (var m in methods)
        {
            var attributes = m.GetCustomAttributes(true);
            if (attributes.Any(a => a.GetType().Name == "TestAttribute")) yield return (m, [], "");
            foreach (var a in attributes.Where(a => a.GetType().Name == "TestCaseAttribute"))
            {
                var args = (object?[])a.GetType().GetProperty("Arguments")!.GetValue(a)!;
                yield return (m, args, "(" + string.Join(", ", args) + ")");
            }
            foreach (var a in attributes.Where(a => a.GetType().Name == "TestCaseSourceAttribute"))
            {
                string source = (string)a.GetType().GetProperty("SourceName")!.GetValue(a)!;
                var member = m.DeclaringType!.GetMember(source, BindingFlags.Static | BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic).FirstOrDefault();
                object? value = member switch
                {
                    FieldInfo f => f.GetValue(null),
                    PropertyInfo p => p.GetValue(null),
                    MethodInfo s => s.Invoke(null, null),
                    _ => null,
                };
                if (value is not System.Collections.IEnumerable items) continue;
                foreach (var item in items)
                {
                    object?[] args = item is object?[] array ? array : [item];
                    yield return (m, args, "(" + string.Join(", ", args) + ")");
                }
            }
        }
    }

    private static void Invoke(MethodInfo m, object target, object?[] args)
    {
        var parameters = m.GetParameters();
        var converted = new object?[parameters.Length];
        for (int i = 0; i < parameters.Length; i++)
            converted[i] = i < args.Length && args[i] is IConvertible c && parameters[i].ParameterType.IsPrimitive
                ? Convert.ChangeType(c, parameters[i].ParameterType, System.Globalization.CultureInfo.InvariantCulture)
                : i < args.Length ? args[i] : parameters[i].DefaultValue;
        try { m.Invoke(target, converted); }
        catch (TargetInvocationException e) when (e.InnerException is not null) { ExceptionDispatchInfo.Capture(e.InnerException).Throw(); }
    }

    private static Exception Unwrap(Exception e) => e is TargetInvocationException { InnerException: { } inner } ? inner : e;

    private static bool IsIgnore(Exception e) => Unwrap(e).GetType().Name is "IgnoreException" or "InconclusiveException";
}
