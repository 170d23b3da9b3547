# The promises the repository makes about itself: README's two commands, CI running the README's test command, and a
# manifest that exports exactly the cmdlets the module has.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    $readme = Get-Content (Join-Path $env:GALLIUM_REPO 'README.md') -Raw
    $commands = @([regex]::Matches($readme, '(?m)^dotnet tool restore && dotnet pwsh \./build\.ps1 -Task \w+$') | ForEach-Object Value)
}

Describe 'README and CI' {
    It 'README gives exactly two commands: one that builds and runs the main job, one that runs all the tests' {
        $commands | Should -Be @('dotnet tool restore && dotnet pwsh ./build.ps1 -Task Demo', 'dotnet tool restore && dotnet pwsh ./build.ps1 -Task Test')
    }

    It '.ci/run calls the README''s test command' {
        $ci = Get-Content (Join-Path $env:GALLIUM_REPO '.ci/run')
        $ci | Should -Contain $commands[1]
    }
}

Describe 'The module manifest' {
    BeforeAll { $manifest = Import-PowerShellDataFile (Join-Path $env:GALLIUM_REPO 'Gallium.PciPassthrough.psd1') }

    It 'exports explicitly exactly the cmdlets the assembly defines' {
        $defined = [Gallium.PciPassthrough.GalliumCmdlet].Assembly.GetExportedTypes() |
            Where-Object { -not $_.IsAbstract -and $_.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false) } |
            ForEach-Object { $a = $_.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0]; "$($a.VerbName)-$($a.NounName)" }
        @($manifest.CmdletsToExport | Sort-Object) | Should -Be @($defined | Sort-Object)
        @((Get-Module Gallium.PciPassthrough).ExportedCmdlets.Keys | Sort-Object) | Should -Be @($defined | Sort-Object)
    }

    It 'is for PowerShell Core, loads its format and types files, and its version is the assemblies'' version' {
        $manifest.CompatiblePSEditions | Should -Be @('Core')
        $manifest.FormatsToProcess | Should -Contain 'Gallium.PciPassthrough.format.ps1xml'
        $manifest.TypesToProcess | Should -Contain 'Gallium.PciPassthrough.types.ps1xml'
        [Gallium.PciPassthrough.GalliumCmdlet].Assembly.GetName().Version.ToString(3) | Should -Be $manifest.ModuleVersion
    }

    It 'every cmdlet declares its output type' {
        foreach ($c in (Get-Module Gallium.PciPassthrough).ExportedCmdlets.Values) {
            $c.OutputType.Count | Should -BeGreaterThan 0 -Because "$($c.Name) must declare [OutputType]"
        }
    }
}
